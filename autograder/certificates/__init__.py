"""Certificates for finishing the course: completion rule, signed credentials, verification.

How the pieces fit (one concept per module, read them in this order):

``rule``        the completion rule - the one place to change what "finished" means
``progress``    reads the nbgrader gradebook and applies the rule (``progress`` command)
``multikey``    base58btc / Multikey / did:key: writing an Ed25519 public key as text
``keys``        the issuer's key (outside the repo, 0600) and its public issuer profile
``trust``       which issuer keys are trusted, and their revocation lists (``keys publish``)
``contexts``    the bundled JSON-LD contexts and a loader that never uses the network
``canon``       RDF Dataset Canonicalization (RDFC-1.0) with "safe mode"
``proof``       the ``eddsa-rdfc-2022`` DataIntegrityProof: sign and verify
``credential``  the Open Badges 3.0 ``OpenBadgeCredential`` (VC 2.0) for one student
``links``       the self-verifying link (``#vc=``) and LinkedIn's "add to profile" link
``pdf``         the printable certificate with its QR code
``registry``    the table of issued credentials beside nbgrader's (idempotent ``certify``)
``issuing``     ``certify``: the steps above for every eligible student
``verifier``    ``verify``: every check, each reported on its own line
``cli``         ``python -m autograder progress|certify|verify|revoke|keys``
"""
