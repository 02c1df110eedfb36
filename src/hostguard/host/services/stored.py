"""Password hashes that services keep for their own accounts, read where this host can read them.

Database servers and the applications on them keep their users' password hashes in tables
(``mysql.global_priv``, ``pg_authid``, WordPress's ``wp_users``) or in files of their own (vsftpd's
pam_userdb database, pure-ftpd's and proftpd's password files). Each reader turns one such store into
:class:`StoredCredential` values that the offline verifiers (``passwords/services_verifiers``) read, so the
same guesses and the same budgeted cracker serve them as serve /etc/shadow: nothing is guessed online.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class StoredCredential:
    """One account's stored password, as a service keeps it.

    ``hashed`` is in the form :func:`hostguard.passwords.services_verifiers.service_verifier` reads (with
    its ``{hg:...}`` tag where the stored value alone does not say how to check it); ``plain_text`` says the
    store holds the password itself, which is a finding of its own whatever the password.
    """

    service: str      # "MariaDB/MySQL", "PostgreSQL", "WordPress", "vsftpd", ...
    account: str      # as the owner names it: "app@localhost", "postgres", "admin"
    hashed: str
    source: str       # where it was read: "mysql.global_priv over /run/mysqld/mysqld.sock", "/etc/x.db"
    plain_text: bool = False


@dataclass(frozen=True)
class StoredCredentials:
    """What the readers found, and the stores they could not read (one line each, said as not checked)."""

    credentials: tuple[StoredCredential, ...] = ()
    problems: tuple[str, ...] = ()
