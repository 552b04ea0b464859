"""Micro-benchmarks (pytest-benchmark), outside the default test run:

    python -m pytest benchmarks/micro --benchmark-columns=min,median,ops

They need forker's extension modules built in the checkout, and httptools and
h11 for the comparisons (the `bench` extra)."""

import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if ROOT not in sys.path:
    sys.path.append(ROOT)

pytest.importorskip("pytest_benchmark")

SMALL = (
    b"GET /hello?name=world HTTP/1.1\r\n"
    b"Host: 127.0.0.1:8080\r\n"
    b"User-Agent: curl/8.5.0\r\n"
    b"Accept: */*\r\n"
    b"\r\n"
)

# A browser's request: 17 fields, cookies and a long referer, about 1.2 KB.
LARGE = (
    b"GET /api/v2/catalog/items?category=books&sort=price&order=asc&page=12&per_page=50 HTTP/1.1\r\n"
    b"Host: shop.example.com\r\n"
    b"Connection: keep-alive\r\n"
    b'sec-ch-ua: "Chromium";v="124", "Google Chrome";v="124", "Not-A.Brand";v="99"\r\n'
    b"sec-ch-ua-mobile: ?0\r\n"
    b"User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    b"Chrome/124.0.0.0 Safari/537.36\r\n"
    b'sec-ch-ua-platform: "Linux"\r\n'
    b"Accept: application/json, text/plain, */*\r\n"
    b"Sec-Fetch-Site: same-origin\r\n"
    b"Sec-Fetch-Mode: cors\r\n"
    b"Sec-Fetch-Dest: empty\r\n"
    b"Referer: https://shop.example.com/catalog/books?sort=price&order=asc&page=11"
    b"&utm_source=newsletter&utm_medium=email&utm_campaign=spring_sale_2024\r\n"
    b"Accept-Encoding: gzip, deflate, br, zstd\r\n"
    b"Accept-Language: en-US,en;q=0.9,de;q=0.8,fr;q=0.7\r\n"
    b"X-Requested-With: XMLHttpRequest\r\n"
    b"X-Request-Id: 8f14e45f-ceea-467a-9f3b-6c1d2e4f5a6b\r\n"
    b'If-None-Match: W/"5f2b-1c3e9a7d4b2f8e6a"\r\n'
    b"Cookie: session=eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFt"
    b"ZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c; "
    b"csrftoken=Xk9a8Bq7Zr2Lm4Np6Ts1Vw3Yc5Ue0Gh; _ga=GA1.2.1234567890.1712345678; "
    b"_gid=GA1.2.987654321.1712345678; theme=dark; cart=3f9a2c7e; locale=en_US\r\n"
    b"\r\n"
)

REQUESTS = {"small": SMALL, "large": LARGE}
