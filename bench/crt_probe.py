"""One-off probe (not part of `make bench`): fetch the throughput data set's objects with awscrt's native
S3 client straight into files, to size the main proposal in bench/README.md 'Findings'.

    ~/.cache/cxbackup/bench-venv/bin/pip install awscrt==0.38.0
    AWS_ACCESS_KEY_ID=... AWS_SECRET_ACCESS_KEY=... bench-venv/bin/python bench/crt_probe.py URL DEST KEYS.json

KEYS.json is a JSON list of "bucket/key" strings.
"""

import json
import os
import resource
import sys
import time
from pathlib import Path

from awscrt import s3
from awscrt.auth import AwsCredentialsProvider
from awscrt.http import HttpHeaders, HttpRequest
from awscrt.io import ClientBootstrap, DefaultHostResolver, EventLoopGroup

url, dest, keysfile = sys.argv[1], sys.argv[2], sys.argv[3]
host = url.split("//", 1)[1]
keys = json.loads(Path(keysfile).read_text())
elg = EventLoopGroup(2)
bootstrap = ClientBootstrap(elg, DefaultHostResolver(elg))
creds = AwsCredentialsProvider.new_static(os.environ["AWS_ACCESS_KEY_ID"], os.environ["AWS_SECRET_ACCESS_KEY"])
client = s3.S3Client(
    bootstrap=bootstrap,
    region="us-east-1",
    signing_config=s3.create_default_s3_signing_config(region="us-east-1", credential_provider=creds),
    tls_mode=s3.S3RequestTlsMode.DISABLED,
    throughput_target_gbps=10.0,
)
t0 = time.perf_counter()
reqs = []
for bucket_key in keys:
    path = str(Path(dest) / bucket_key.rsplit("/", 1)[1])
    req = HttpRequest("GET", "/" + bucket_key, HttpHeaders([("Host", host)]))
    reqs.append(client.make_request(type=s3.S3RequestType.GET_OBJECT, request=req, recv_filepath=path))
bad = 0
for r in reqs:
    try:
        r.finished_future.result(timeout=300)
    except s3.S3ResponseError as e:
        bad += 1
        if bad == 1:
            print("first error", e.status_code, e.headers, e.body[:300], e.operation_name, file=sys.stderr)
print("failed", bad, file=sys.stderr)
ru = resource.getrusage(resource.RUSAGE_SELF)
print(f"crt: {len(keys)} objects wall {time.perf_counter() - t0:.2f} user {ru.ru_utime:.2f} sys {ru.ru_stime:.2f}")
