#!/usr/bin/env python3
"""Call the Voximplant Management API through voxproxy with the official,
unmodified Python client (PyPI `voximplant-apiclient`, pinned in
requirements.txt) and print what it returns as one JSON line on stdout.

Environment:
  VOXPROXY_ENDPOINT     required: host[:port] of voxproxy's TLS listener, e.g.
                        127.0.0.1:8443 (the client builds https://{endpoint}/platform_api,
                        HTTPS only; an IPv6 literal needs brackets: [::1]:8443)
  VOXPROXY_CREDENTIALS  required: path of a credentials.json (any RSA key: voxproxy
                        replaces the token the client signs)
  VOXPROXY_ACCOUNT      optional: account id to act for; passed as
                        VoximplantAPIConfig(account_id=...), which the client puts in
                        its JWT's `iss` (as a string). Passed through as given, so a
                        malformed value reaches voxproxy as a malformed `iss`.
  VOXPROXY_METHOD       optional: API method, default GetAccountInfo
  VOXPROXY_PARAMS       optional: JSON object of method parameters
  VOXPROXY_TIMEOUT      optional: seconds before giving up (exit 3), default 30
  SSL_CERT_FILE         voxproxy's CA, read by httpx, BUT the client itself prefers
                        REQUESTS_CA_BUNDLE, then CURL_CA_BUNDLE, when either is set (many
                        machines set both to the system bundle): unset them or point them at
                        the CA too, or use VOXPROXY_CA.
  VOXPROXY_CA           optional: PEM file of voxproxy's CA; when set, this script sets
                        SSL_CERT_FILE and REQUESTS_CA_BUNDLE to it and removes CURL_CA_BUNDLE
                        for its own process before the client runs. Without it the
                        environment is used as given.

Exit status: 0 and the result on stdout; 1 when the call failed (an API error in the
answer, an HTTP error or a connection/TLS error), with one JSON line on stderr;
2 on a usage error; 3 on timeout.
"""
import json
import os
import re
import signal
import sys

from voximplant.apiclient import VoximplantAPI, VoximplantAPIConfig, VoximplantException


def fail(kind, status, **fields):
    sys.stderr.write(json.dumps(dict({"exception": kind}, **fields), default=str) + "\n")
    sys.exit(status)


def on_timeout(signum, frame):
    fail("Timeout", 3, message="no answer within VOXPROXY_TIMEOUT")


def snake(name):
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def main():
    endpoint = os.environ.get("VOXPROXY_ENDPOINT")
    credentials = os.environ.get("VOXPROXY_CREDENTIALS")
    if not endpoint or not credentials:
        fail("Usage", 2, message="set VOXPROXY_ENDPOINT and VOXPROXY_CREDENTIALS")
    account = os.environ.get("VOXPROXY_ACCOUNT") or None
    method = os.environ.get("VOXPROXY_METHOD") or "GetAccountInfo"
    try:
        params = json.loads(os.environ.get("VOXPROXY_PARAMS") or "{}")
    except ValueError as e:
        fail("Usage", 2, message="VOXPROXY_PARAMS is not JSON: %s" % e)
    if not isinstance(params, dict):
        fail("Usage", 2, message="VOXPROXY_PARAMS must be a JSON object")

    ca = os.environ.get("VOXPROXY_CA")
    if ca:
        os.environ["SSL_CERT_FILE"] = ca
        os.environ["REQUESTS_CA_BUNDLE"] = ca
        os.environ.pop("CURL_CA_BUNDLE", None)

    signal.signal(signal.SIGALRM, on_timeout)
    signal.alarm(int(float(os.environ.get("VOXPROXY_TIMEOUT") or "30")))

    if account is None:
        # Note: VoximplantAPIConfig(account_id=...) defaults to 0, and the client then
        # signs iss "0"; only the plain constructor falls back to the file's account_id.
        api = VoximplantAPI(credentials, endpoint=endpoint)
    else:
        api = VoximplantAPI(
            config=VoximplantAPIConfig(
                credentials_file_path=credentials, endpoint=endpoint, account_id=account
            )
        )

    try:
        public = getattr(api, snake(method), None)
        if public is not None and callable(public) and not snake(method).startswith("_"):
            # The client's own typed method (e.g. get_account_info).
            res = public(**params)
        else:
            # A method name that has no snake_case twin: the request path every
            # typed method uses.
            res = api._perform_request(method, params)
            if isinstance(res, dict) and "error" in res:
                raise VoximplantException(res["error"].get("msg"), res["error"].get("code"))
    except VoximplantException as e:
        fail("VoximplantException", 1, code=e.code, message=e.message)
    except Exception as e:  # httpx connection/TLS errors and the like
        extra = {}
        if "CERTIFICATE_VERIFY_FAILED" in str(e):
            bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
            if bundle:
                extra["hint"] = (
                    "the client trusts REQUESTS_CA_BUNDLE/CURL_CA_BUNDLE (%s) before "
                    "SSL_CERT_FILE; set VOXPROXY_CA or unset them" % bundle
                )
        fail(type(e).__name__, 1, message=str(e), **extra)

    if isinstance(res, (bytes, bytearray)):
        res = {"raw": res.decode("utf-8", "replace")}
    sys.stdout.write(json.dumps(res, default=str) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
