"""The same four endpoints for every server, each in its own interface.

GET  /          the 11-byte body greeting!!!
GET  /100k      a 102400-byte body
POST /upload    reads the whole body, answers its length in decimal
GET  /sleep1ms  sleeps 1 ms (time.sleep in the blocking interfaces,
                asyncio.sleep in ASGI and RSGI), then answers greeting!!!
"""

GREETING = b"greeting!!!"
BIG = b"x" * 102400
HEADERS = [("Content-Type", "text/plain")]
