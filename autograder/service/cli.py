"""``python -m autograder serve``: start the course service on this machine.

Everything has a default that works locally (127.0.0.1:8000, SQLite and keys in
``~/.local/share/inferlab/service``, e-mail links printed here); options and ``INFERLAB_SERVICE_*``
variables change them (see ``config.py`` and the README).
"""
from __future__ import annotations

import sys

from .config import ServiceConfig


def cmd_serve(args) -> int:
    import uvicorn

    from .app import create_app

    config = ServiceConfig.from_env(
        host=args.host, port=args.port, base_url=args.base_url, data_dir=args.data,
        database_url=args.database, mail=args.mail, workers=args.workers,
        ray_address=args.ray, admin_emails=tuple(e.lower() for e in args.admin) or None)
    if args.publish_trust:
        return publish_trust(config, args.publish_trust)
    app = create_app(config)
    print(f"inferlab course service: {config.base_url}  (data: {config.data_dir}; "
          f"e-mail: {config.mail}; grading: "
          f"{'Ray ' + config.ray_address if config.ray_address else f'{config.workers} workers'})",
          file=sys.stderr, flush=True)
    uvicorn.run(app, host=config.host, port=config.port, log_level=args.log_level,
                proxy_headers=False)
    return 0


def publish_trust(config: ServiceConfig, out_dir) -> int:
    """Add this service's issuer (DID document, signed status list) to a trust list: the course's
    bundled one (docs/verify) makes its certificates verify offline with the course's CLI/page."""
    from autograder.certificates import trust

    from .db import Database
    from .issuer import ServiceIssuer

    database = Database(config.db_url)
    database.migrate()
    issuer = ServiceIssuer(config.base_url, config.issuer_name, config.issuer_dir)
    with database.session() as s:
        issuer.ensure_ready(s)
        entry = issuer.trust_entry(s)
    out = trust.repository_verify_dir() if out_dir == "bundled" else out_dir
    for path in trust.merge_into(entry, out):
        print(f"wrote {path}")
    print(f"{issuer.did} is now trusted by that list; publish it again after revoking "
          "(the list carries a copy of the status list) or verifiers use --online")
    return 0


def add_arguments(p) -> None:
    p.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, help="port (default 8000)")
    p.add_argument("--base-url", help="the public address (the did:web domain), default "
                   "http://HOST:PORT; behind a TLS proxy e.g. https://certs.example.org")
    p.add_argument("--data", type=__import__("pathlib").Path,
                   help="data folder (database, uploads, issuer keys, secret)")
    p.add_argument("--database", help="SQLAlchemy URL (default SQLite in the data folder), "
                   "e.g. postgresql+psycopg://user@host/inferlab")
    p.add_argument("--mail", help="'console' (default) or smtp://host:port / smtps://host:port")
    p.add_argument("--workers", type=int, help="grading processes (default 2)")
    p.add_argument("--ray", metavar="ADDRESS",
                   help="grade on this Ray cluster ('local' starts one)")
    p.add_argument("--admin", action="append", default=[], metavar="EMAIL",
                   help="an e-mail address with staff rights (repeatable)")
    p.add_argument("--log-level", default="info")
    p.add_argument("--publish-trust", metavar="DIR", nargs="?", const="bundled",
                   help="write this service's issuer into the trust list in DIR (default: the "
                   "course's bundled docs/verify) and exit, instead of serving")
