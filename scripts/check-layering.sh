#!/usr/bin/env bash
# The module seams, checked by grepping the sources (docs/architecture.md):
#  - drctl's S3 client types appear only in ObjectStore, the S3 driver (Storage/S3Storage.swift)
#    and the composition root (Sources/drctl); everything else goes through Storage.
#  - only those import ObjectStore.
set -euo pipefail
cd "$(dirname "$0")/.."

types='S3Client|S3URL|S3Error|S3Configuration|S3Endpoint|S3Responses|S3ResponseError|ObjectInfo|ObjectVersion|BucketObjectLock|ObjectLockState|ListPage|MultipartUpload|CredentialResolver|S3Reader'
allowed='^Sources/(ObjectStore/|Storage/S3Storage\.swift|drctl/)'
status=0

hits=$(grep -rnwE "$types" Sources --include='*.swift' | grep -vE "$allowed" | grep -vE '^[^:]+:[0-9]+:\s*///' || true)
if [ -n "$hits" ]; then
  echo "check-layering: S3 client types outside the S3 driver and the commands:" >&2
  echo "$hits" >&2
  status=1
fi

imports=$(grep -rln '^import ObjectStore$\|^@testable import ObjectStore$' Sources --include='*.swift' | grep -vE "$allowed" || true)
if [ -n "$imports" ]; then
  echo "check-layering: these import ObjectStore (use Storage):" >&2
  echo "$imports" >&2
  status=1
fi

[ $status = 0 ] && echo "check-layering: S3 client types only in ObjectStore, Storage/S3Storage.swift and Sources/drctl"
exit $status
