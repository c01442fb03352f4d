#!/bin/sh
# Started by hello-tdx.service; StandardOutput=journal+console puts these lines on ttyS0.
echo "hello-tdx: started"
cat /etc/hello-tdx/message
