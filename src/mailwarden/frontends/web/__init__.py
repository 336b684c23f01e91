"""The web page under ``/ui/``: administrators manage accounts, users help themselves.

The package, on well-kept libraries: Starlette routes and reads forms, Jinja2
renders the templates in ``mailwarden/web/templates`` with autoescape on,
itsdangerous signs cookies and tokens. Its modules:

* ``app.py``: :class:`WebUi`, the ASGI application: routes, the request
  boundary (size limit, security headers, error pages), sessions, sign-in/out;
* ``sessions.py``: the signed values (session cookie, CSRF tokens, binding tags);
* ``pages.py``: rendering, static files, redirects;
* ``admin.py`` and ``selfservice.py``: the pages, each change through its one
  code path (:class:`~mailwarden.accounts.edit.AccountAdmin` for accounts, the
  field rules in ``accounts/`` shared with the mail gateway, the guard for bans);
* ``auth.py``: who may use the self-service page, and the proof a change needs;
* ``accountlist.py`` and ``accountform.py``: the account list (natural order, a
  bounded window over the streamed matches) and the account form (values shown,
  a posted form read as the admin API's merge patch), both pure;
* ``staffpages.py``: administrators' sign-in (name, password, TOTP), the bootstrap
  page that creates the first one, TOTP enrolment (administrators and users), the
  audit log, administrator and API token pages (decisions: accounts/staff.py).

``HttpApi`` (frontends/http.py) hands every ``/ui`` path to :class:`WebUi`; the
auth hot path (``/api/v1/auth/*``) never reaches this package.

Security choices (docs/web.md has the reasons in prose):

* **Signed cookies, no server-side store.** A session is a cookie holding role,
  uid, expiry, a random session id and a *binding tag*, signed with HMAC-SHA256
  (itsdangerous, one salt per purpose).
  The key is random per process unless ``http.session_secret_file`` names one
  (needed when several workers serve the same site). The binding tag is an HMAC
  of the admin credentials (admin) or of the account's stored password hash
  (user), so changing the admin token or a user's password ends every session
  made with the old one; a user session also ends when the account is disabled
  or its ``web`` service switched off (checked on every request). Sign-out adds
  the session id to a per-process list of revoked ids until the cookie expires.
* **Cookies** are ``HttpOnly``, ``SameSite=Strict``, ``Path=/ui`` and ``Secure``
  whenever the request came over TLS.
* **CSRF**: every POST form carries a token derived from the session id (or, on
  the sign-in forms, from a random pre-session cookie); a POST without the right
  token is refused with 403 before anything else happens. A cross-site ``Origin``
  header is refused too.
* **No enumeration**: a failed sign-in says only "invalid login", whatever the
  engine's reason; users sign in through :meth:`Engine.authenticate` (front end
  ``web``, service ``web``), so the guard and the per-service switches apply.
* **No takeover with a session alone** (``auth.py``): a master login
  never reaches the self-service page, and a new password, SSH keys, an OpenPGP
  key or a forward address need the current password entered again.
* **Nothing secret leaves**: a password hash is never rendered; a generated
  password is shown once, on a page sent with ``Cache-Control: no-store`` (as
  every page is); errors never carry a trace. A Content-Security-Policy allows
  scripts and styles only from ``/ui/static/``.
"""

from mailwarden.frontends.web.app import WebUi
from mailwarden.frontends.web.selfservice import password_problem
from mailwarden.frontends.web.sessions import load_secret

__all__ = ["WebUi", "load_secret", "password_problem"]
