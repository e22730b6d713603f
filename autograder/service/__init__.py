"""The course service: self-paced students sign up, submit lessons, watch them graded in a sandbox,
and earn a certificate that anyone can verify. Started by ``make serve`` (``python -m autograder
serve``) on 127.0.0.1.

Read in this order (one concept per module):

``config``         settings from options and the environment; secrets from files or variables
``models``         the tables; ``migrations/`` (Alembic) creates and changes them; ``db`` runs them
``security``       hashed tokens, signed cookies, CSRF, rate limits
``mail``           the e-mail links: SMTP, or printed on the console
``grading_queue``  queued submissions -> worker processes (or Ray) running the sandboxed grader
``progress``       best score per lesson against the completion rule
``issuer``         did:web identity, key rotation, the status list, issuing and revoking
``qr``             the certificate page's QR code
``app``            the web application: pages, the notebook API, public documents, admin
``cli``            ``serve``: start it
"""
