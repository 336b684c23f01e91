"""The web page in headless Chromium against a real ``mailwarden serve``.

Debian's ``chromium`` and ``chromium-driver`` are driven with Selenium. An
administrator signs in, creates an account, resets its password and disables it:
Dovecot's own ``doveadm auth test`` on the daemon's socket then gets 77 for it.
The administrator makes an app password for the account on its page (it logs in
over the socket) and revokes it there (it no longer does). A user signs in with
their mail password and changes it: the old one stops
working over the Dovecot socket, the new one works. The live chart and the list
of banned sources (with a real ban, lifted from the page) are shown too.

A screenshot of every page is saved to ``test-artifacts/screenshots/`` in the
checkout (ignored by git), for review.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.frontends.test_web import ed25519_line
from tests.peers.configs import GUARD_RULE_IP, daemon_toml
from tests.peers.conftest import doveadm_auth, free_port, private_dir, running_serve
from tests.peers.test_doveadm import populate

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"

pytestmark = [
    pytest.mark.peer,
    pytest.mark.skipif(shutil.which("doveadm") is None, reason="doveadm is not installed"),
    pytest.mark.skipif(
        not (os.access(CHROMIUM, os.X_OK) and os.access(CHROMEDRIVER, os.X_OK)),
        reason="Debian's chromium and chromium-driver are not installed",
    ),
]

webdriver = pytest.importorskip("selenium.webdriver")
from selenium.common.exceptions import TimeoutException  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support import expected_conditions  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402

from mailwarden.accounts import totp  # noqa: E402

ADMIN_TOKEN = "an admin token 4 tests"
ATTACKER = "192.0.2.9"
#: The browser's own mistakes from loopback count in the guard too (a wrong and a
#: closed bootstrap token, a user's wrong password and wrong current password: four
#: within a minute at most), so the per-address threshold here is five: the browser
#: is never banned, the attacker is.
GUARD_RULE = {**GUARD_RULE_IP, "threshold": 5}


def daemon_config(port: int, token: str) -> str:
    return daemon_toml(
        passwords={"scheme": "SHA512-CRYPT"},
        http={
            "enabled": True,
            "listen": [f"127.0.0.1:{port}"],
            "admin_token": token,
            "session_secret_file": "session.key",
        },
        guard={"allow_networks": [], "ban_time": 600.0, "rules": [GUARD_RULE]},
    )


@dataclass(frozen=True)
class Node:
    root: Path
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@pytest.fixture(scope="module")
def node() -> Iterator[Node]:
    with private_dir("web") as root:
        asyncio.run(populate(root / "mailwarden.db"))
        port = free_port()
        (root / "mailwarden.toml").write_text(daemon_config(port, ADMIN_TOKEN))
        (root / "session.key").write_bytes(os.urandom(32).hex().encode())
        (root / "min.conf").write_text("ssl = no\n")
        ready = (str(root / "run" / "auth-client"), ("127.0.0.1", port))
        try:
            with running_serve(root / "mailwarden.toml", ready=ready):
                yield Node(root, port)
        finally:
            log_text = (root / "serve.log").read_text(errors="replace")
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            (SCREENSHOTS.parent / "web-serve.log").write_text(log_text)
            assert "Traceback" not in log_text, log_text


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    profile = tempfile.mkdtemp(prefix="mailwarden-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",  # the tests may run as root
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1280,1500",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(arg)
    service = webdriver.ChromeService(executable_path=CHROMEDRIVER)
    driver = webdriver.Chrome(options=options, service=service)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def doveadm(node: Node, user: str, password: str, rip: str = "198.51.100.7") -> int:
    socket_path = str(node.root / "run" / "auth-client")
    return doveadm_auth(node.root / "min.conf", socket_path, user, password, rip)


def shot(driver: Any, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    # Grow the window to the page so the screenshot holds all of it.
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(1280, max(900, min(int(height) + 120, 4000)))
    assert driver.save_screenshot(str(SCREENSHOTS / f"{name}.png"))


def fill(driver: Any, **fields: str) -> None:
    for ident, value in fields.items():
        box = driver.find_element(By.ID, ident)
        box.clear()
        box.send_keys(value)


def click(driver: Any, ident: str) -> None:
    """Click a button that submits a form and wait for the next page."""
    submit(driver, driver.find_element(By.ID, ident))


def submit(driver: Any, button: Any) -> None:
    page = driver.find_element(By.TAG_NAME, "html")
    # A script click: the same form submission, without chromedriver's scroll-into-view
    # step, which now and then loses the node on a long page.
    driver.execute_script("arguments[0].click();", button)
    WebDriverWait(driver, 15).until(expected_conditions.staleness_of(page))


def wait_for(driver: Any, node: Node, ready: Any, seconds: float = 30) -> None:
    """WebDriverWait, but a timeout says what the page and the daemon showed (the chart
    test has failed a few times under a loaded machine, never on its own)."""
    try:
        WebDriverWait(driver, seconds).until(ready)
    except TimeoutException:
        page = driver.find_element(By.TAG_NAME, "body").text
        log = (node.root / "serve.log").read_text()[-3000:]
        raise AssertionError(f"timed out; page:\n{page}\n--- serve.log tail:\n{log}") from None


def text(driver: Any) -> str:
    return str(driver.find_element(By.TAG_NAME, "body").text)


ADMIN = "ann"
ADMIN_PASSWORD = "ann's long password"


def current_code(secret: str) -> str:
    return totp.code_at(secret, int(time.time() // totp.STEP))


@pytest.fixture(scope="module")
def recovery_codes(node: Node, browser: Any) -> list[str]:
    """The site's first administrator, made in the browser: the bootstrap token opens
    only the page that creates her; her first sign-in enrols TOTP from the QR page's
    secret; the ten recovery codes are shown once (the later tests sign in with them,
    since a code of the current time step is accepted only once)."""
    d = browser
    d.delete_all_cookies()
    d.get(node.url + "/ui/admin/login")
    shot(d, "01-admin-sign-in")
    fill(d, username="admin", password="wrong token")
    click(d, "signin")
    assert "invalid login" in text(d)
    fill(d, username="admin", password=ADMIN_TOKEN)
    click(d, "signin")
    assert d.current_url.endswith("/ui/admin/first")
    fill(d, name=ADMIN, password=ADMIN_PASSWORD, password2=ADMIN_PASSWORD)
    click(d, "create")
    assert "The first administrator exists" in text(d)
    # The token opens nothing any more.
    fill(d, username="admin", password=ADMIN_TOKEN)
    click(d, "signin")
    assert "invalid login" in text(d)
    fill(d, username=ADMIN, password=ADMIN_PASSWORD)
    click(d, "signin")
    assert d.current_url.endswith("/ui/admin/enrol")
    assert d.find_element(By.CSS_SELECTOR, ".qr svg") is not None
    secret = d.find_element(By.ID, "secret").text
    shot(d, "01b-totp-enrolment")
    fill(d, code="000000" if current_code(secret) != "000000" else "111111")
    click(d, "confirm")
    assert "not right" in text(d)
    fill(d, code=current_code(secret))
    click(d, "confirm")
    codes = [li.text for li in d.find_elements(By.CSS_SELECTOR, "#codes li")]
    assert len(codes) == 10
    shot(d, "01c-recovery-codes")
    click(d, "continue")
    assert d.current_url.endswith("/ui/admin/accounts")
    return codes


def admin_sign_in(d: Any, node: Node, codes: list[str]) -> None:
    """Sign in as the administrator with one of her recovery codes (used up)."""
    d.delete_all_cookies()
    d.get(node.url + "/ui/admin/login")
    fill(d, username=ADMIN, password=ADMIN_PASSWORD)
    click(d, "signin")
    assert "authenticator" in text(d)  # the password alone opens nothing
    fill(d, username=ADMIN, password=ADMIN_PASSWORD, code=codes.pop())
    click(d, "signin")
    assert d.current_url.endswith("/ui/admin/accounts"), text(d)


def test_admin_creates_resets_and_disables_an_account_that_then_cannot_log_in(
    node: Node, browser: Any, recovery_codes: list[str]
) -> None:
    d = browser
    d.delete_all_cookies()
    d.get(node.url + "/ui/")
    assert d.current_url.endswith("/ui/login")
    admin_sign_in(d, node, recovery_codes)
    assert "alice" in text(d)
    shot(d, "02-accounts")

    d.get(node.url + "/ui/admin/new")
    shot(d, "03-new-account")
    fill(d, uid="webuser@example.com", password="first password 1")
    click(d, "create")
    assert "Account created" in text(d)
    shot(d, "04-account-created")
    assert doveadm(node, "webuser@example.com", "first password 1") == 0

    click(d, "edit-new")
    click(d, "reset")
    generated = d.find_element(By.ID, "generated").text
    assert len(generated) >= 20
    shot(d, "05-password-reset")
    assert doveadm(node, "webuser@example.com", "first password 1") == 77
    assert doveadm(node, "webuser@example.com", generated) == 0

    # An app password made for the account on its page: shown once, listed without
    # its value, good for mail until revoked there.
    fill(d, name="phone")
    click(d, "add-app-password")
    value = d.find_element(By.ID, "app-password-value").text
    assert value.startswith("mwa_")
    shot(d, "05b-admin-app-password")
    assert doveadm(node, "webuser@example.com", value) == 0
    click(d, "back-to-me")
    listing = d.find_element(By.ID, "app-passwords").text
    assert "phone" in listing and value not in listing
    shot(d, "05c-admin-app-passwords")
    submit(d, d.find_element(By.CSS_SELECTOR, "#app-passwords button"))
    assert "The app password was revoked." in text(d)
    assert doveadm(node, "webuser@example.com", value) == 77

    d.get(node.url + "/ui/admin/account?uid=webuser%40example.com")
    Select(d.find_element(By.ID, "status")).select_by_value("disabled")
    pop3 = d.find_element(By.ID, "service-pop3")
    if pop3.is_selected():
        pop3.click()
    click(d, "save")
    assert "Saved." in text(d)
    assert Select(d.find_element(By.ID, "status")).first_selected_option.text == "disabled"
    assert not d.find_element(By.ID, "service-pop3").is_selected()
    shot(d, "06-account-disabled")
    assert doveadm(node, "webuser@example.com", generated) == 77

    d.get(node.url + "/ui/admin/accounts?q=webuser")
    assert "disabled" in text(d)
    shot(d, "07-search")


def test_admin_watches_the_live_chart_and_unblocks_a_banned_source(
    node: Node, browser: Any, recovery_codes: list[str]
) -> None:
    d = browser
    admin_sign_in(d, node, recovery_codes)
    d.get(node.url + "/ui/admin/chart")
    wait_for(d, node, lambda drv: "accepted" in drv.find_element(By.ID, "totals").text)
    # Logins while the page polls: the next poll shows them as a rate.
    for i in range(3):
        for _ in range(i + 1):
            assert doveadm(node, "bob", "bobpw") == 0
        assert doveadm(node, "bob", f"wrong {i}", rip=ATTACKER) == 77
        time.sleep(2.0)

    def peak(drv: Any, result: str) -> float:
        legend = drv.find_element(By.ID, "legend").text
        m = re.search(result + r": [0-9.–]+/s \(peak ([0-9.]+)/s\)", legend)
        return float(m.group(1)) if m else 0.0

    wait_for(d, node, lambda drv: peak(drv, "accepted") > 0 and peak(drv, "denied") > 0)
    shot(d, "08-live-chart")

    # The attacker's network is banned once its failures reach the rule's threshold (5
    # in 60 s). A counter is a sliding-window estimate (docs/guard.md, "Redis"): just
    # after a window boundary it can lag behind the true count, so a few more guesses
    # (bounded) make the ban certain; never the right password before it, which
    # would make the attacker's network one bob is known to log in from.
    for i in range(3, 10):
        d.get(node.url + "/ui/admin/bans")
        if ATTACKER in text(d):
            break
        assert doveadm(node, "bob", f"wrong {i}", rip=ATTACKER) == 77
    # Banned: even bob's right password is refused from it.
    assert doveadm(node, "bob", "bobpw", rip=ATTACKER) == 77
    d.get(node.url + "/ui/admin/bans")
    assert ATTACKER in text(d)
    shot(d, "09-banned-sources")
    submit(d, d.find_element(By.XPATH, "//td/form/button[text()='Unblock']"))
    assert "Ban lifted." in text(d)
    assert "No source is banned." in text(d)
    shot(d, "10-ban-lifted")
    assert doveadm(node, "bob", "bobpw", rip=ATTACKER) == 0


def test_a_user_changes_their_password_and_the_old_one_stops_working(
    node: Node, browser: Any
) -> None:
    d = browser
    d.delete_all_cookies()
    d.get(node.url + "/ui/login")
    shot(d, "11-user-sign-in")
    fill(d, username="alice", password="not her password")
    click(d, "signin")
    assert "invalid login" in text(d)
    shot(d, "12-user-invalid-login")
    fill(d, username="alice", password="secret")
    click(d, "signin")
    assert d.current_url.endswith("/ui/me")
    shot(d, "13-user-page")

    fill(d, current="secret", new="alice", repeat="alice")
    click(d, "change-password")
    assert "at least 10 characters" in text(d)
    fill(d, current="secret", new="a much better password", repeat="a much better password")
    click(d, "change-password")
    assert "Your password was changed." in text(d)
    shot(d, "14-password-changed")
    assert doveadm(node, "alice", "secret") == 77
    assert doveadm(node, "alice", "a much better password") == 0

    # SSH keys (and the OpenPGP key, the forward address) need the current password:
    # a stolen session alone cannot hand the account to someone else.
    fill(d, keys=ed25519_line(7, "alice@laptop"), **{"ssh-current": "secret"})
    click(d, "save-ssh")
    assert "The current password is not right." in text(d)
    fill(d, keys=ed25519_line(7, "alice@laptop"), **{"ssh-current": "a much better password"})
    click(d, "save-ssh")
    assert "SSH keys saved." in text(d)
    assert "alice@laptop" in d.find_element(By.ID, "keys").get_attribute("value")

    fill(d, **{"profile-c": "de", "profile-l": "Berlin", "profile-ircnick": "alice_"})
    Select(d.find_element(By.ID, "profile-loginshell")).select_by_value("/bin/bash")
    click(d, "save-profile")
    assert "Profile saved." in text(d)
    assert d.find_element(By.ID, "profile-c").get_attribute("value") == "DE"
    shot(d, "15-profile-saved")

    # Signing out ends the session: the page sends the browser to sign in again.
    submit(d, d.find_element(By.XPATH, "//nav//button[text()='Sign out']"))
    assert "You are signed out." in text(d)
    d.get(node.url + "/ui/me")
    assert d.current_url.endswith("/ui/login")


def test_a_user_enrols_totp_signs_in_with_a_code_and_an_admin_resets_it(
    node: Node, browser: Any, recovery_codes: list[str]
) -> None:
    d = browser
    d.delete_all_cookies()
    d.get(node.url + "/ui/login")
    fill(d, username="bob", password="bobpw")
    click(d, "signin")
    d.get(node.url + "/ui/me/totp")
    secret = d.find_element(By.ID, "secret").text
    shot(d, "16-user-totp-enrolment")
    used = current_code(secret)
    fill(d, code=used)
    click(d, "confirm")
    codes = [li.text for li in d.find_elements(By.CSS_SELECTOR, "#codes li")]
    assert len(codes) == 10
    submit(d, d.find_element(By.XPATH, "//nav//button[text()='Sign out']"))

    # The password alone no longer opens the page; the code just used is refused
    # (unless the clock moved on meanwhile, when it is simply wrong); a recovery
    # code works once.
    d.get(node.url + "/ui/login")
    fill(d, username="bob", password="bobpw")
    click(d, "signin")
    assert "authenticator" in text(d)
    fill(d, username="bob", password="bobpw", code=used)
    click(d, "signin")
    assert "not right" in text(d)
    fill(d, username="bob", password="bobpw", code=codes[0])
    click(d, "signin")
    assert d.current_url.endswith("/ui/me"), text(d)
    shot(d, "17-user-signed-in-with-recovery-code")
    # Mail protocols are never asked for a code.
    assert doveadm(node, "bob", "bobpw") == 0

    admin_sign_in(d, node, recovery_codes)
    d.get(node.url + "/ui/admin/account?uid=bob")
    click(d, "reset-totp")
    assert "Two-factor sign-in was reset." in text(d)
    d.get(node.url + "/ui/admin/audit?user=bob")
    assert "totp.reset" in text(d) and "totp.enrol" in text(d)
    shot(d, "18-audit-log")
    d.delete_all_cookies()
    d.get(node.url + "/ui/login")
    fill(d, username="bob", password="bobpw")
    click(d, "signin")
    assert d.current_url.endswith("/ui/me")
