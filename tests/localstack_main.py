"""Start LocalStack with its S3 object data in a folder of the caller's choosing.

Run with LocalStack's own Python (.venv-localstack), never the project's: tests/s3_backends.py
starts it so. LocalStack 4.13 keeps object data in a fixed /tmp/localstack-s3-storage, where
two instances on one machine (two pytest sessions, two developers' checkouts) would remove
each other's files when they delete same-named buckets; S3_STORAGE_DIR gives each its own.
"""

import os
import runpy
import sys

from localstack.services.s3 import provider
from localstack.utils.aws import aws_stack

if not hasattr(provider, "DEFAULT_S3_TMP_DIR"):
    # Another LocalStack than requirements-localstack.txt pins: fail rather than share /tmp.
    sys.exit("localstack_main: this LocalStack has no DEFAULT_S3_TMP_DIR; see its pin")
provider.DEFAULT_S3_TMP_DIR = os.environ["S3_STORAGE_DIR"]
# LocalStack asks DNS whether s3.localhost.localstack.cloud resolves (to build virtual-host
# URLs): a query to the machine's resolver, off loopback. The answer is fixed here to "no".
aws_stack.CACHE_S3_HOSTNAME_DNS_STATUS = False
runpy.run_module("localstack.runtime.main", run_name="__main__", alter_sys=True)
