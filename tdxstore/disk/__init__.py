"""The bootable disk of a UKI and its measurement manifest (L2): GPT/FAT tools via the process runner.

Never reads the store: callers pass the UKI, the firmware file and where to write.
"""
