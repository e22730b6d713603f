"""Alembic's entry point for the service's migrations (run by ``db.upgrade``, or by hand:
``alembic -c autograder/service/alembic.ini upgrade head`` with the URL in ``-x url=...``)."""
from alembic import context
from sqlalchemy import create_engine

from autograder.service.models import Base

config = context.config
url = config.attributes.get("url") or context.get_x_argument(as_dictionary=True).get("url") \
    or config.get_main_option("sqlalchemy.url")
connection = config.attributes.get("connection")


def run(conn) -> None:
    context.configure(connection=conn, target_metadata=Base.metadata,
                      render_as_batch=conn.dialect.name == "sqlite")
    with context.begin_transaction():
        context.run_migrations()


if connection is not None:
    run(connection)
else:
    with create_engine(url).connect() as conn:
        run(conn)
