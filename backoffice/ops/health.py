"""What a load balancer asks: does the database answer, does the broker answer. Each answer is a word, never the
error: a probe is anonymous, so it says nothing about hosts, drivers or versions."""
from __future__ import annotations

import logging
import os
from pathlib import Path

import redis
from flask import Flask
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from backoffice.extensions import db

log = logging.getLogger(__name__)

OK = "ok"
UNAVAILABLE = "unavailable"
_BROKER_CLIENT = "backoffice.broker_probe"


def database_status() -> str:
    """One SELECT 1 on a connection of its own, so a broken request transaction cannot mark the database down."""
    try:
        with db.engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except SQLAlchemyError as error:
        log.warning("readiness: the database does not answer (%s)", type(error).__name__)
        return UNAVAILABLE
    return OK


def broker_status(app: Flask) -> str:
    """Redis answers a PING (when REDIS_URL is set); otherwise the embedded broker's folder takes messages."""
    if app.config.get("REDIS_URL"):
        client = app.extensions.get(_BROKER_CLIENT)
        if client is None:
            timeout = app.config["REDIS_WEB_TIMEOUT_SECONDS"]
            client = redis.Redis.from_url(app.config["REDIS_URL"], socket_connect_timeout=timeout,
                                          socket_timeout=timeout)
            app.extensions[_BROKER_CLIENT] = client
        try:
            client.ping()
        except redis.RedisError as error:
            log.warning("readiness: the broker does not answer (%s)", type(error).__name__)
            return UNAVAILABLE
        return OK
    queue = Path(app.config["BROKER_FOLDER"]) / "queue"
    return OK if queue.is_dir() and os.access(queue, os.W_OK) else UNAVAILABLE


def readiness(app: Flask) -> tuple[dict, int]:
    """The readiness answer and its status: 503 only when the database is down. A broker that is down leaves
    the web answering (work waits in the database), so the process stays in rotation, reported as degraded."""
    database, broker = database_status(), broker_status(app)
    if database != OK:
        overall, status = UNAVAILABLE, 503
    elif broker != OK:
        overall, status = "degraded", 200
    else:
        overall, status = OK, 200
    return {"status": overall, "database": database, "broker": broker}, status
