"""The embedded local cloud: the whole lake on one machine, with no AWS account.

`edl local start` spawns one background process, the local runtime (`runtime.py`), listening on
127.0.0.1 only. It holds a list of services: moto in server mode as the AWS endpoint ("aws"),
fronted by what keeps it a lake - only loopback-addressed requests and no CORS (`loopback.py`),
presigned URLs checked as S3 checks them (`presigned.py`), moto's control API behind a per-runtime
secret (`control_api.py`) and STS refusing what AWS refuses (`sts_guard.py`) - and beside it
EDL's own pieces: the REST API served from the Lambda handlers ("api", `api_server.py`, with
SigV4 checked against moto's IAM in `api_auth.py` and the handlers' role in `api_context.py`)
and the job runner with its warm Spark session ("jobs", `job_runner.py`); both act as the roles
their stacks create (`roles.py`). Once the endpoint answers, `bootstrap.py` creates what an
account team creates in a real account - the privileged CloudFormation role, the platform admin
and a few read-only demo users - and then switches moto's IAM enforcement on, so every later call
is authorised as it would be in AWS. `control.py` is the API the `edl local` commands call:
start, stop, status and env.

The runtime's files live in the EDL home (`edl.paths.local_dir()`): its pid file and log, the
state file (endpoint, services, who was bootstrapped), the control-API secret and the users'
credentials, in the AWS shared-credentials format with a matching AWS config file. moto keeps
everything in memory, so stopping the runtime ends the lake and its keys; the files go with it.

Nothing in the cloud path (`edl/utils`, the Lambda handlers, the jobs) imports this package.
"""
