"""A FastAPI application for tests/test_asgi.py, served by forker and by
uvicorn (the oracle): JSON, path and query parameters, dependency injection,
a background task, a streamed response, a file response, forms and uploads."""

import hashlib
import os
import tempfile

from fastapi import BackgroundTasks, Depends, FastAPI, File, Form, Header, HTTPException, UploadFile
from fastapi.responses import FileResponse, PlainTextResponse, StreamingResponse
from pydantic import BaseModel

app = FastAPI()
BACKGROUND = []  # what background tasks did, per worker
FILE = os.path.join(tempfile.gettempdir(), f"forker-asgi-fastapi-{os.getuid()}.bin")
if not os.path.exists(FILE):
    with open(FILE + ".tmp", "wb") as f:
        f.write(bytes(range(256)) * 1024)  # 256 KiB
    os.replace(FILE + ".tmp", FILE)


class Item(BaseModel):
    name: str
    price: float
    tags: list[str] = []


def token(x_token: str = Header(default="none")) -> str:
    return x_token


def user(token: str = Depends(token)) -> dict:
    if token == "bad":
        raise HTTPException(status_code=401, detail="bad token")
    return {"token": token}


@app.get("/pid", response_class=PlainTextResponse)
def pid():
    return str(os.getpid())


@app.get("/items/{item_id}")
async def read_item(item_id: int, q: str | None = None, limit: int = 10):
    return {"item_id": item_id, "q": q, "limit": limit}


@app.post("/items")
async def create_item(item: Item, who: dict = Depends(user)):
    return {"item": item.model_dump(), "user": who, "total": item.price * 2}


@app.post("/background")
async def background(tasks: BackgroundTasks, name: str = "x"):
    tasks.add_task(BACKGROUND.append, f"done {name}")
    return {"queued": name}


@app.get("/background")
async def background_seen():
    return {"done": BACKGROUND}


@app.get("/stream")
async def stream(n: int = 5):
    async def chunks():
        for i in range(n):
            yield f"line {i}\n".encode()

    return StreamingResponse(chunks(), media_type="text/plain")


@app.get("/file")
async def file():
    return FileResponse(FILE, media_type="application/octet-stream")


@app.post("/form")
async def form(name: str = Form(...), count: int = Form(...)):
    return {"name": name, "count": count}


@app.post("/upload")
async def upload(file: UploadFile = File(...), note: str = Form("")):
    data = await file.read()
    return {"filename": file.filename, "size": len(data),
            "sha256": hashlib.sha256(data).hexdigest(), "note": note}


@app.get("/sync")
def sync_endpoint():  # run in Starlette's thread pool
    return {"sync": True}
