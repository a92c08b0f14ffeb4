"""The bare stack the webhook is measured against: FastAPI on uvicorn (uvloop, httptools) over the same TLS,
one POST route that parses the body with orjson and answers `allowed: true` with the uid. No logging, no
metrics, no engine: what the framework and TLS cost on their own."""

from __future__ import annotations

import argparse
import asyncio
import ssl

import orjson
import uvicorn
from fastapi import FastAPI, Request, Response

app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)


@app.post("/mutate")
async def mutate(request: Request) -> Response:
    review = orjson.loads(await request.body())
    answer = {
        "apiVersion": review["apiVersion"],
        "kind": "AdmissionReview",
        "response": {"uid": review["request"]["uid"], "allowed": True},
    }
    return Response(orjson.dumps(answer), media_type="application/json")


health = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)


@health.get("/readyz")
async def readyz() -> Response:
    return Response(b"ok", media_type="text/plain")


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cert-dir", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--health-port", type=int, required=True)
    args = parser.parse_args()
    webhook = uvicorn.Config(
        app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False, lifespan="off",
        ssl_certfile=f"{args.cert_dir}/tls.crt", ssl_keyfile=f"{args.cert_dir}/tls.key",
        ssl_version=ssl.PROTOCOL_TLS_SERVER,
    )  # fmt: skip
    probe = uvicorn.Config(
        health, host="127.0.0.1", port=args.health_port, log_level="warning", access_log=False, lifespan="off"
    )
    await asyncio.gather(uvicorn.Server(webhook).serve(), uvicorn.Server(probe).serve())


if __name__ == "__main__":
    import uvloop

    uvloop.run(main())
