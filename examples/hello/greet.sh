#!/bin/sh
echo "hello, ${1:-world}"
cat /opt/hello/built.txt
