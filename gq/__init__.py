"""gq: an HTTP job daemon on gevent: bounded queue, fixed pool, durable journal."""

__version__ = "0.1.0"
