#!/usr/bin/env python3
"""Load what `voxproxy tls init` wrote with pyca/cryptography (pinned in requirements.txt)
and verify the server certificate's chain to the CA as a TLS client would: the strict
RFC 5280 server verifier (`cryptography.x509.verification.PolicyBuilder`), for each name
given. Prints one JSON line: {"subject": ..., "verified": [name, ...], "chain": N}.

Usage: verify_tls.py DIR NAME...   (DIR holds ca.pem and cert.pem; a NAME that is an IP
                                    literal is checked as an IP SAN, any other as a DNS name)

Exit status: 0 verified for every name; 1 a certificate does not load or does not verify
(the error on stderr); 2 usage.
"""
import ipaddress
import json
import os
import sys

from cryptography import x509
from cryptography.x509.verification import PolicyBuilder, Store


def subject_for(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


def main() -> int:
    if len(sys.argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    folder, names = sys.argv[1], sys.argv[2:]
    try:
        with open(os.path.join(folder, "ca.pem"), "rb") as f:
            ca = x509.load_pem_x509_certificate(f.read())
        with open(os.path.join(folder, "cert.pem"), "rb") as f:
            cert = x509.load_pem_x509_certificate(f.read())
        builder = PolicyBuilder().store(Store([ca]))
        chain = []
        for name in names:
            chain = builder.build_server_verifier(subject_for(name)).verify(cert, [])
    except Exception as e:  # loading raises ValueError, verifying VerificationError
        print(f"{type(e).__name__}: {e}", file=sys.stderr)
        return 1
    print(json.dumps({"subject": cert.subject.rfc4514_string(), "verified": names, "chain": len(chain)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
