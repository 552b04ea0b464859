"""Fails when a test run skipped a test that the CI machine should have run.

    python .ci/check_skips.py REPORT.xml

REPORT.xml is pytest's --junitxml report. .ci/run installs every tool and
package the tests use, so a skip there means an install was lost (a tool missing
turns tests into skips, not failures). The skips allowed below are the ones no
install can supply: privileges, the kernel, the machine's CPUs and network
stack, the system's OpenSSL build. Each names the test module and the skip's
reason; anything else fails the run."""

from __future__ import annotations

import re
import sys
import xml.etree.ElementTree as ET
from typing import List, Tuple

# (test module, regular expression the skip message must match)
ALLOWED: List[Tuple[str, str]] = [
    # switching users needs root (the GitHub runners are not)
    ("tests.test_master", r"switching users needs root|no user nobody"),
    ("tests.test_master_sockets", r"needs root, unshare and net\.ipv4\.tcp_migrate_req"),
    # a container may forbid the private mount namespace even to root
    ("tests.test_master_sockets", r"cannot make a private read-only sysctl here"),
    # the machine's CPUs
    ("tests.test_master_sockets", r"needs CPUs 0 and 1|needs two CPUs"),
    # a container without an IPv6 loopback
    ("tests.test_master_sockets", r"no IPv6 loopback"),
    ("tests.test_engine", r"no IPv6( loopback)?$"),
    # OpenSSL builds without TLS 1.1 at any security level
    ("tests.test_tls", r"this OpenSSL cannot offer TLS 1\.1"),
]


def skips(report: str) -> List[Tuple[str, str, str]]:
    """(module, test, message) of every skipped test case."""
    found = []
    for case in ET.parse(report).getroot().iter("testcase"):
        skipped = case.find("skipped")
        if skipped is not None:
            message = skipped.get("message", "")
            # pytest.skip() messages arrive prefixed with the exception's name
            message = re.sub(r"^Skipped: ", "", message)
            found.append((case.get("classname", ""), case.get("name", ""), message))
    return found


def allowed(module: str, message: str) -> bool:
    return any(module == m and re.search(pattern, message) for m, pattern in ALLOWED)


def main() -> int:
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    found = skips(sys.argv[1])
    unexpected = [s for s in found if not allowed(s[0], s[2])]
    for module, name, message in found:
        mark = "allowed" if (module, name, message) not in unexpected else "UNEXPECTED"
        print(f"skip {mark}: {module}::{name}: {message}")
    if unexpected:
        print(f"check_skips: {len(unexpected)} unexpected skip(s): install what they need, "
              "or allow them in .ci/check_skips.py with the reason no install can help",
              file=sys.stderr)
        return 1
    print(f"check_skips: {len(found)} skip(s), all allowed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
