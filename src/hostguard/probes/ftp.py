"""FTP: ``USER``/``PASS`` with :mod:`ftplib` against loopback only.

FTP servers log local users in through PAM, so a guess there is a guess at a system account: the issue says
never to guess those online (issue 2 covers them offline, and PAM may lock them: pam_faillock). This prober
therefore tries only the anonymous accounts, and virtual users where the caller has established that the
server's PAM stack is not the system one (vsftpd ``guest_enable`` with a ``pam_service_name`` backed by a
user database, not pam_unix); every other account is refused before any connection.
"""

from __future__ import annotations

import ftplib
from collections.abc import Iterable
from dataclasses import dataclass, field

from hostguard.probes.base import Accepted, Answer, Endpoint, Error, Locked, ProbeError, Refused

ANONYMOUS = frozenset({"anonymous", "ftp"})


@dataclass
class FtpProber:
    """Password attempts against one FTP server on loopback TCP (FTP has no unix sockets)."""

    endpoint: Endpoint
    virtual_users: frozenset[str] = field(default_factory=frozenset)   # confirmed non-system accounts only
    timeout: float = 5.0
    service: str = "ftp"
    lockout_limit: int | None = None

    def __post_init__(self) -> None:
        if self.endpoint.path is not None:
            raise ProbeError("probe refused: FTP is probed over loopback TCP, not a unix socket")
        self.endpoint.check()

    def allowed(self, user: str) -> None:
        """Refuse an account that may be a system account (PAM): only anonymous and confirmed virtual users."""
        if user not in ANONYMOUS and user not in self.virtual_users:
            raise ProbeError(f"probe refused: FTP account {user!r} may be a system account (logins go through "
                             "PAM); it is checked offline, never guessed online")

    def try_password(self, user: str, password: str) -> Answer:
        """One ``USER``/``PASS`` exchange on a fresh connection."""
        self.allowed(user)
        self.endpoint.check()
        client = ftplib.FTP(timeout=self.timeout)
        try:
            client.connect(self.endpoint.host or "", self.endpoint.port or 21)
            client.login(user, password)
        except ftplib.error_perm as exc:
            text = str(exc)
            return Refused() if text.startswith("530") else Error(f"server said {text[:120]}")
        except ftplib.error_temp as exc:
            text = str(exc)
            return Locked(f"server said {text[:120]}") if text.startswith("421") else Error(f"server said {text[:120]}")
        except (ftplib.Error, EOFError, ValueError) as exc:
            return Error(f"unexpected reply: {str(exc)[:120]}")
        except TimeoutError:
            return Error("timed out")
        except OSError as exc:
            return Error(f"connection failed: {exc.strerror or exc}")
        finally:
            if client.sock is not None:     # connected: say goodbye, so the server logs a clean end
                try:
                    client.quit()
                except (ftplib.Error, OSError, EOFError):
                    client.close()
        return Accepted()


def anonymous_accounts(accounts: Iterable[str]) -> list[str]:
    """The accounts of ``accounts`` this prober may try without further evidence."""
    return [a for a in accounts if a in ANONYMOUS]
