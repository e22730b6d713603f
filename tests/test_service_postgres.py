"""The course service on a real PostgreSQL server (``--database postgresql+psycopg://...``).

A throwaway cluster is created in a temporary folder (``initdb``, trust authentication, listening
on 127.0.0.1 only), the migrations run on it, and a student's path through the service uses it:
sign-up, confirmation, API token, a queued submission, a certificate issued and revoked, a key
rotated. Skipped when PostgreSQL's server programs are not installed (``make test`` installs
them as root with apt, beside Chromium).
"""
from __future__ import annotations

import glob
import io
import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parent.parent


def _pg_bin() -> Path | None:
    for candidate in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if (Path(candidate) / "pg_ctl").exists():
            return Path(candidate)
    found = shutil.which("pg_ctl")
    return Path(found).parent if found else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def postgres_url():
    pytest.importorskip("psycopg")
    bin_dir = _pg_bin()
    if bin_dir is None:
        pytest.skip("PostgreSQL's server programs are not installed (apt-get install postgresql)")
    as_user: list[str] = []
    folder = Path(tempfile.mkdtemp(prefix="inferlab-pg-"))
    if os.geteuid() == 0:     # the server refuses to run as root: use the postgres account
        try:
            account = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no 'postgres' account to run the server")
        os.chown(folder, account.pw_uid, account.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    data, port = folder / "data", _free_port()
    subprocess.run([*as_user, str(bin_dir / "initdb"), "-D", str(data), "--auth=trust",
                    "-U", "postgres", "--no-sync"], check=True, capture_output=True)
    subprocess.run([*as_user, str(bin_dir / "pg_ctl"), "-D", str(data), "-w", "-l",
                    str(folder / "log"), "-o",
                    f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off",
                    "start"], check=True, capture_output=True)
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*as_user, str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate",
                        "stop"], capture_output=True)
        shutil.rmtree(folder, ignore_errors=True)


def test_the_service_runs_on_postgresql(postgres_url, tmp_path):
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext
    from fastapi.testclient import TestClient

    from autograder.certificates.verifier import verify_credential
    from autograder.service.app import create_app
    from autograder.service.config import ServiceConfig
    from autograder.service.mail import Mailer
    from autograder.service.models import Base, Credential, Student

    mail = io.StringIO()
    config = ServiceConfig.from_env(data_dir=tmp_path, database_url=postgres_url,
                                    base_url="http://127.0.0.1:8000")
    app = create_app(config, mailer=Mailer("console", "t <t@example.org>", out=mail),
                     start_queue=False)
    db, issuer = app.state.db, app.state.issuer
    assert db.engine.dialect.name == "postgresql"
    with db.engine.connect() as connection:     # the migrations made exactly the models' schema
        assert compare_metadata(MigrationContext.configure(connection), Base.metadata) == []

    with TestClient(app, base_url="http://127.0.0.1:8000") as client:
        csrf = re.search(r'name="csrf" value="([^"]+)"', client.get("/").text).group(1)
        client.post("/signup", data={"name": "Émilie du Châtelet", "email": "emilie@example.org",
                                     "csrf": csrf})
        link = re.search(r"http://127\.0\.0\.1:8000(/auth\?token=\S+)", mail.getvalue()).group(1)
        page = client.get(link)
        assert "Hello Émilie du Châtelet" in page.text
        csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
        token = re.search(r'id="api-token">([^<]+)<',
                          client.post("/token", data={"csrf": csrf}).text).group(1)
        notebook = (REPO / "course" / "00_why_inference_is_slow" /
                    "00_why_inference_is_slow.ipynb").read_bytes()
        reply = client.post("/api/submissions", headers={"Authorization": f"Bearer {token}"},
                            data={"lesson": "00_why_inference_is_slow"},
                            files={"notebook": ("00.ipynb", notebook)})
        assert reply.status_code == 202 and reply.json()["status"] == "queued"
        assert client.get(link).status_code == 400           # a link works once

        with db.session() as s:                             # issue, rotate, revoke on PostgreSQL
            student = s.query(Student).filter_by(email="emilie@example.org").one()
            credential = issuer.issue(s, student, "test criteria")
            assert student.confirmed_at.tzinfo is not None
        page = client.get(f"/c/{credential.short_id}")
        assert 'class="banner valid"' in page.text
        with db.session() as s:
            issuer.rotate(s, "staff@example.org")
            issuer.revoke(s, s.get(Credential, credential.id), "staff@example.org")
        entry = client.get("/trust.json").json()["issuers"][0]
        result = verify_credential(credential.document, [entry])
        assert result.verdict == "REVOKED", result.report()
        keys = client.get("/.well-known/did.json").json()["verificationMethod"]
        assert [("revoked" in k) for k in keys] == [True, False]
