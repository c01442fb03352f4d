-- tdx store database, schema version 1 (PRAGMA user_version).
-- A store path is valid if and only if it has a row in valid_paths; a directory under store/
-- without a row is garbage left by an interrupted operation and is removed by gc/verify.
CREATE TABLE IF NOT EXISTS valid_paths (
    id                INTEGER PRIMARY KEY,
    path              TEXT    NOT NULL UNIQUE,   -- base name: <hash>-<name>
    nar_hash          TEXT    NOT NULL,          -- sha256:<hex> of the NAR serialisation
    nar_size          INTEGER NOT NULL,
    registration_time INTEGER NOT NULL,          -- seconds since the epoch
    deriver           TEXT,                      -- base name of the .drv that built it, if any
    ca                TEXT,                      -- content address (fixed:r:sha256:<hex>, fixed:sha256:…, text:sha256:…)
    impure            INTEGER NOT NULL DEFAULT 0 -- built with --no-sandbox: not trustworthy
);

CREATE TABLE IF NOT EXISTS refs (
    referrer  INTEGER NOT NULL REFERENCES valid_paths(id) ON DELETE CASCADE,
    reference INTEGER NOT NULL REFERENCES valid_paths(id) ON DELETE CASCADE,
    PRIMARY KEY (referrer, reference)
);
CREATE INDEX IF NOT EXISTS refs_by_reference ON refs(reference);

-- Outputs of derivations that were built (or substituted) here: drv base name + output id -> path.
CREATE TABLE IF NOT EXISTS derivation_outputs (
    drv    TEXT NOT NULL,
    output TEXT NOT NULL,
    path   TEXT NOT NULL,
    PRIMARY KEY (drv, output)
);
CREATE INDEX IF NOT EXISTS derivation_outputs_by_path ON derivation_outputs(path);

-- Signatures of valid paths (`<key name>:<base64 Ed25519 signature>` over the path's fingerprint,
-- docs/store.md). Additive: Database also creates it in stores made before it existed.
CREATE TABLE IF NOT EXISTS signatures (
    path      INTEGER NOT NULL REFERENCES valid_paths(id) ON DELETE CASCADE,
    signature TEXT    NOT NULL,
    PRIMARY KEY (path, signature)
);
