"""The web admin end to end, in a real browser (Chromium via Playwright) against a real
`shoal up`: every page a user works with, and what a browser must never be allowed."""

import re
import uuid

import httpx
import pytest

from conftest import CLUSTER_NAME, PASSWORD, login, shot, until


def expect_text(page, selector, pattern, patience=15000):
    page.wait_for_function(
        '([s, p]) => { const e = document.querySelector(s); return e && new RegExp(p).test(e.textContent); }',
        arg=[selector, pattern], timeout=patience)


def nav(page, section):
    """Clicks a section in the navigation bar and waits until its page is in (htmx swaps
    the body in place: a click returns before that)."""
    page.click('nav >> text={}'.format(section))
    page.wait_for_selector('nav a[aria-current=page]:text-is("{}")'.format(section))


# --- Login -------------------------------------------------------------------------------

def test_a_wrong_password_is_refused(page):
    login(page, password='not-the-password')
    expect_text(page, '[data-testid=error]', 'wrong user or password')
    assert '/admin/login' in page.url
    assert page.context.cookies() == []
    shot(page, 'login')


def test_login_then_the_dashboard_lists_every_member(admin, cluster):
    page = admin
    assert page.locator('header [data-testid=cluster-name]').inner_text() == CLUSTER_NAME
    members = cluster.api('GET', '/cluster').json()['members']
    table = page.locator('[data-testid=members]')
    for role, ms in members.items():
        for m in ms:
            row = table.locator('tr', has_text=m['id'])
            assert row.count() == 1, 'member {} missing from the dashboard'.format(m['id'])
            assert row.locator('.health').inner_text() == 'ready'
            assert row.get_attribute('data-role') == role
    assert table.locator('.badge', has_text='leader').count() >= 1
    shot(page, 'dashboard')


def test_a_deep_link_returns_to_its_page_after_the_login(page):
    page.goto('/admin/jobs')
    assert '/admin/login' in page.url
    page.fill('#password', PASSWORD)
    page.click('button[type=submit]')
    page.wait_for_url('**/admin/jobs')
    assert page.locator('tr[data-name=nightly-greeting]').count() == 1


def test_login_works_from_the_keyboard(page):
    page.goto('/admin/login')
    # From the user field, Tab reaches the password; the form submits with Enter.
    page.focus('#username')
    page.keyboard.press('Tab')
    assert page.evaluate('document.activeElement.id') == 'password'
    page.keyboard.type(PASSWORD)
    page.keyboard.press('Enter')
    page.wait_for_url('**/admin/')


# --- Services ----------------------------------------------------------------------------

def test_services_are_grouped_and_filtered(admin):
    page = admin
    nav(page, 'Services')
    page.wait_for_selector('tr[data-service="webadmin.greet"]')
    assert page.locator('tr[data-service="hello.say-hello"]').count() == 1
    page.fill('#q', 'greet')
    # The list narrows as you type (htmx swaps the list in place).
    page.wait_for_selector('tr[data-service="hello.say-hello"]', state='detached')
    assert page.locator('tr[data-service="webadmin.greet"]').count() == 1
    assert 'q=greet' in page.url
    page.fill('#q', '')
    page.wait_for_selector('tr[data-service="hello.say-hello"]')
    shot(page, 'services')


def test_a_service_page_shows_its_doc_simpleio_channels_source_and_invokes(admin):
    page = admin
    page.goto('/admin/services/webadmin.greet')
    assert page.locator('[data-testid=service-name]').inner_text() == 'webadmin.greet'
    assert 'Greets whoever is named.' in page.content()
    assert page.locator('table:has(caption:text("Input")) code', has_text='name').count() == 1
    assert page.locator('a', has_text='greet').count() >= 1  # its channel
    assert 'class Greet(Service)' in page.locator('[data-testid=source]').inner_text()
    page.fill('#payload', '{"name": "Ada", "title": "Countess"}')
    page.click('form.invoke button[type=submit]')
    expect_text(page, '[data-testid=invoke-status]', '^200$')
    body = page.locator('[data-testid=invoke-body]').inner_text()
    assert 'Hello, Countess Ada!' in body
    cid = page.locator('[data-testid=invoke-cid]').inner_text()
    assert re.fullmatch(r'[0-9a-f]{24}', cid), cid
    assert 'ms' in page.locator('[data-testid=invoke-time]').inner_text()
    shot(page, 'service')
    # Bad input gets the API's precise answer, not a 500.
    page.fill('#payload', '{"title": "no name"}')
    page.click('form.invoke button[type=submit]')
    expect_text(page, '[data-testid=invoke-status]', '^400$')
    assert 'name' in page.locator('[data-testid=invoke-body]').inner_text()
    page.fill('#payload', '{not json')
    page.click('form.invoke button[type=submit]')
    expect_text(page, '[data-testid=invoke-body]', 'not valid JSON')
    assert page.locator('[data-testid=invoke-status]').inner_text() == '400'
    # A timeout that is not a number: said in the form's words, not a header's name.
    page.fill('#payload', '{}')
    page.fill('#timeout', 'soon')
    page.click('form.invoke button[type=submit]')
    expect_text(page, '[data-testid=invoke-body]', 'Timeout must be a whole number')
    assert 'x-shoal' not in page.locator('[data-testid=invoke-body]').inner_text().lower()


# --- Channels and security ---------------------------------------------------------------

def test_a_channel_made_in_the_browser_serves_plain_http(admin, cluster):
    page = admin
    nav(page, 'Channels')
    page.click('text=New channel (http)')
    page.fill('#f-name', 'browser-made')
    page.fill('#f-service', 'webadmin.greet')
    page.fill('#f-url_path', '/browser/greet')
    page.fill('#f-method', 'POST')
    assert page.is_checked('#f-is_active')
    shot(page, 'channel-form')
    page.click('form.object button[type=submit]')
    expect_text(page, '[data-testid=notice]', 'browser-made saved')
    assert page.locator('tr[data-name=browser-made]').count() == 1
    shot(page, 'channels')
    r = until(lambda: (lambda r: r if r.status_code == 200 else None)(
        httpx.post(cluster.http_url + '/browser/greet', json={'name': 'Grace'}, timeout=5)),
        what='the new channel answering')
    assert r.json() == {'response': {'greeting': 'Hello, Grace!'}}
    # Edit it: the form comes back filled in; delete it: it stops answering.
    page.click('tr[data-name=browser-made] >> text=browser-made')
    assert page.input_value('#f-url_path') == '/browser/greet'
    assert page.get_attribute('#f-name', 'readonly') is not None
    page.goto('/admin/channels')
    page.click('tr[data-name=browser-made] button.danger')
    expect_text(page, '[data-testid=notice]', 'browser-made deleted')
    until(lambda: httpx.post(cluster.http_url + '/browser/greet', json={}, timeout=5).status_code == 404,
          what='the deleted channel gone')


def test_pickers_offer_services_security_and_methods_and_an_unknown_service_needs_a_yes(admin, cluster):
    page = admin
    page.goto('/admin/channels/new?type=http')
    picks = lambda f: page.eval_on_selector_all(
        '[data-testid=picks-{}] option'.format(f), 'os => os.map(o => o.value)')
    assert 'webadmin.greet' in picks('service')
    assert picks('method') == ['GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'HEAD', 'OPTIONS']
    assert page.get_attribute('#f-service', 'list') == 'l-service'
    # A method no channel serves: the API's refusal, at the field.
    page.fill('#f-name', 'picked')
    page.fill('#f-service', 'webadmin.greet')
    page.fill('#f-url_path', '/picked')
    page.fill('#f-method', 'FETCH')
    page.click('form.object button[type=submit]')
    expect_text(page, '[data-testid=field-error]', "'FETCH' is not an HTTP method")
    # A service nobody deployed: a warning, nothing saved until "Save anyway".
    page.fill('#f-method', 'POST')
    page.fill('#f-service', 'not.deployed.yet')
    page.click('form.object button[type=submit]')
    expect_text(page, '[data-testid=warning]', 'No deployed service is named not.deployed.yet')
    assert cluster.api('GET', '/channels/picked').status_code == 404
    page.check('#confirm-unknown')
    page.click('form.object button[type=submit]')
    expect_text(page, '[data-testid=notice]', 'picked saved')
    assert cluster.api('GET', '/channels/picked').json()['service'] == 'not.deployed.yet'
    cluster.api('DELETE', '/channels/picked')


def test_an_invalid_field_shows_its_error_next_to_it(admin):
    page = admin
    page.goto('/admin/channels/new?type=http')
    page.fill('#f-name', 'bad-one')
    page.fill('#f-url_path', '/bad')
    page.fill('#f-service', 'webadmin.greet')
    page.fill('#f-max_body', 'lots')
    page.click('form.object button[type=submit]')
    err = page.locator('[data-field=max_body] [data-testid=field-error]')
    err.wait_for()
    assert 'whole number' in err.inner_text()
    # A rule of the API itself, shown at the field it names.
    page.fill('#f-max_body', '999999999999')
    page.click('form.object button[type=submit]')
    expect_text(page, '[data-field=max_body] [data-testid=field-error]', 'over the most')
    page.fill('#f-max_body', '')
    page.fill('#f-service', '')
    page.click('form.object button[type=submit]')
    expect_text(page, '[data-field=service] [data-testid=field-error]', 'service is required')
    assert page.get_attribute('#f-service', 'aria-invalid') == 'true'
    shot(page, 'field-error')
    page.goto('/admin/channels')
    assert page.locator('tr[data-name=bad-one]').count() == 0


def test_secrets_are_entered_but_never_shown_back(admin, cluster):
    page = admin
    page.goto('/admin/security/new?type=basic_auth')
    page.fill('#f-name', 'browser-sec')
    page.fill('#f-username', 'alice')
    page.fill('#f-password', 's3cret-pw')
    page.click('form.object button[type=submit]')
    expect_text(page, '[data-testid=notice]', 'browser-sec saved')
    assert 's3cret-pw' not in page.content()
    page.goto('/admin/security/browser-sec')
    assert page.input_value('#f-password') == ''
    assert 's3cret-pw' not in page.content()
    # Saved again with the password left empty: the stored one is kept.
    page.fill('#f-realm', 'Browser realm')
    page.click('form.object button[type=submit]')
    expect_text(page, '[data-testid=notice]', 'browser-sec saved')
    cluster.api('PUT', '/channels/sec-check', json={
        'name': 'sec-check', 'type': 'http', 'service': 'webadmin.echo',
        'url_path': '/sec/check', 'security': 'browser-sec'}).raise_for_status()
    until(lambda: httpx.post(cluster.http_url + '/sec/check', json={}, auth=('alice', 's3cret-pw'),
                             timeout=5).status_code == 200, what='the kept password accepted')
    assert httpx.post(cluster.http_url + '/sec/check', json={}, auth=('alice', 'wrong'),
                      timeout=5).status_code == 401
    shot(page, 'security-form')


def test_the_security_pages_edit_bearer_jwt_and_client_cert_definitions(admin, cluster):
    """Issue #23: the new security types have forms of their own (fields from the config
    format), secrets entered but never shown back."""
    page = admin
    page.goto('/admin/security/new?type=bearer')
    page.fill('#f-name', 'browser-bearer')
    assert page.get_attribute('#f-token', 'type') == 'password'
    page.fill('#f-token', 'browser-token-0123456789')
    page.click('form.object button[type=submit]')
    expect_text(page, '[data-testid=notice]', 'browser-bearer saved')
    assert 'browser-token-0123456789' not in page.content()
    page.goto('/admin/security/new?type=jwt')
    page.fill('#f-name', 'browser-jwt')
    page.fill('#f-issuer', 'https://idp.test')
    page.fill('#f-jwks_url', 'https://idp.test/jwks')
    page.click('form.object button[type=submit]')
    expect_text(page, '[data-testid=notice]', 'browser-jwt saved')
    # A definition the API refuses shows why, next to the form.
    page.goto('/admin/security/new?type=jwt')
    page.fill('#f-name', 'browser-jwt-bad')
    page.fill('#f-issuer', 'https://idp.test')
    page.click('form.object button[type=submit]')
    expect_text(page, 'form.object', 'jwks_url or keys')
    got = cluster.api('GET', '/security/browser-jwt').json()
    assert got['type'] == 'jwt' and got['jwks_url'] == 'https://idp.test/jwks'
    got = cluster.api('GET', '/security/browser-bearer').json()
    assert got['type'] == 'bearer' and 'token' not in got
    for name in ('browser-jwt', 'browser-bearer'):
        cluster.api('DELETE', '/security/' + name).raise_for_status()


def test_an_edit_with_every_secret_left_empty_changes_nothing(admin, cluster):
    """Issue #24: every secret type, edited in the browser with its secret fields left
    empty, keeps its stored secret (the API says nothing changed)."""
    page = admin
    for kind, obj in [
        ('security', {'name': 'keep-key', 'type': 'apikey', 'header': 'X-Keep', 'key': 'keep-key-0123456789'}),
        ('security', {'name': 'keep-wss', 'type': 'wss', 'username': 'u', 'password': 'keep-wss-pw',
                      'password_type': 'digest'}),
        ('security', {'name': 'keep-wss-text', 'type': 'wss', 'username': 'u', 'password': 'keep-wss-pw'}),
        ('outgoing', {'name': 'keep-http', 'type': 'http', 'address': 'http://127.0.0.1:9',
                      'security': {'type': 'basic_auth', 'username': 'u', 'password': 'keep-out-pw'}}),
        ('outgoing', {'name': 'keep-ftp', 'type': 'ftp', 'host': '127.0.0.1', 'port': 9,
                      'username': 'u', 'password': 'keep-ftp-pw'}),
        ('outgoing', {'name': 'keep-db', 'type': 'sql', 'url': 'postgres://postgres:keep-sql-pw@127.0.0.1/test'}),
    ]:
        cluster.api('PUT', '/{}/{}'.format(kind, obj['name']), json=obj).raise_for_status()
        page.goto('/admin/{}/{}'.format(kind, obj['name']))
        for secret in page.locator('input[type=password]').all():
            assert secret.input_value() == ''
        page.click('form.object button[type=submit]')
        expect_text(page, '[data-testid=notice]', re.escape('{} saved (nothing changed)'.format(obj['name'])))
    # The API key still admits its caller.
    cluster.api('PUT', '/channels/keep-check', json={
        'name': 'keep-check', 'type': 'http', 'service': 'webadmin.echo',
        'url_path': '/keep/check', 'security': 'keep-key'}).raise_for_status()
    until(lambda: httpx.post(cluster.http_url + '/keep/check', json={},
                             headers={'X-Keep': 'keep-key-0123456789'}, timeout=5).status_code == 200,
          what='the kept API key accepted')
    cluster.api('DELETE', '/channels/keep-check').raise_for_status()


def test_outgoing_connections_list_and_edit(admin):
    page = admin
    nav(page, 'Outgoing')
    assert page.locator('tr[data-name=notes-db]').count() == 1
    page.click('tr[data-name=notes-db] >> text=notes-db')
    assert page.input_value('#f-url') == 'sqlite::memory:'
    page.fill('#f-pool_size', '2')
    page.click('form.object button[type=submit]')
    expect_text(page, '[data-testid=notice]', 'notes-db saved')
    shot(page, 'outgoing')


# --- Deploy and rollback -----------------------------------------------------------------

V1 = b'''from zato.server.service import Service

class Version(Service):
    name = 'webadmin.version'

    def handle(self):
        self.response.payload = {'version': 1}
'''

V2 = V1.replace(b"{'version': 1}", b"{'version': 2}")

BROKEN = b'''from zato.server.service import Service

class Version(Service):
    name = 'webadmin.version'

    def handle(self)
        pass
'''


def version(cluster):
    r = cluster.api('POST', '/services/webadmin.version/invoke', json={})
    return r.json().get('version') if r.status_code == 200 else None


def upload(page, source):
    page.set_input_files('#files', files=[{'name': 'webadmin_version.py', 'mimeType': 'text/x-python',
                                           'buffer': source}])
    page.click('form[enctype] button[type=submit]')


def test_deploy_an_uploaded_module_and_roll_it_back(admin, cluster):
    page = admin
    nav(page, 'Deploy')
    upload(page, V1)
    expect_text(page, '[data-testid=deployed]', 'deployed webadmin_version')
    until(lambda: version(cluster) == 1, what='version 1 serving')
    upload(page, V2)
    expect_text(page, '[data-testid=deployed]', 'deployed webadmin_version')
    until(lambda: version(cluster) == 2, what='version 2 serving')
    # A module that does not import is refused with its file and line; v2 keeps serving.
    upload(page, BROKEN)
    expect_text(page, '[data-testid=deploy-errors]', 'webadmin_version.py')
    errors = page.locator('[data-testid=deploy-errors]').inner_text()
    assert 'webadmin_version.py:6' in errors and 'SyntaxError' in errors, errors
    assert version(cluster) == 2
    shot(page, 'deploy')
    row = page.locator('tr[data-module=webadmin_version]')
    row.locator('button', has_text='Roll back').click()
    expect_text(page, '[data-testid=notice]', 'webadmin_version rolled back')
    assert page.dialogs[-1] == 'Roll webadmin_version back to its previous version?', page.dialogs
    until(lambda: version(cluster) == 1, what='version 1 serving again')
    # The history keeps version 2: its page shows the change against version 1, now
    # current, and restores it (a roll forward).
    assert 'it replaced' in page.locator('[data-testid=notice]').inner_text()
    row = page.locator('tr[data-module=webadmin_version]')
    row.locator('summary').click()
    links = row.locator('ol.versions li')
    assert links.count() >= 2
    assert '(current)' in links.nth(0).inner_text() or '(current)' in links.nth(links.count() - 1).inner_text()
    newest = links.nth(0)
    assert '(current)' not in newest.inner_text(), newest.inner_text()
    newest.locator('a').click()
    expect_text(page, '[data-testid=diff]', "version': 2")
    diff = page.locator('[data-testid=diff]').inner_text()
    assert "- " in diff and "+ " in diff, diff
    assert "'version': 2" in page.locator('[data-testid=version-source]').inner_text()
    shot(page, 'module-version')
    page.click('[data-testid=restore]')
    expect_text(page, '[data-testid=notice]', 'webadmin_version rolled back to')
    assert page.dialogs[-1].startswith('Make version'), page.dialogs
    until(lambda: version(cluster) == 2, what='version 2 restored')


def test_pickup_folder_modules_are_listed_and_a_service_links_to_its_module(admin):
    page = admin
    page.goto('/admin/services/webadmin.greet')
    page.click('text=deployments')
    page.wait_for_url('**/admin/deploy#m-webadmin_fixtures')
    row = page.locator('tr#m-webadmin_fixtures')
    assert row.count() == 1
    assert 'pickup folder' in row.inner_text() and 'webadmin.greet' in row.inner_text()


# --- Jobs --------------------------------------------------------------------------------

def test_run_a_job_now_and_see_the_run_counted(admin, cluster):
    page = admin
    nav(page, 'Jobs')
    row = page.locator('tr[data-name=nightly-greeting]')
    before = int(row.locator('[data-testid=runs]').inner_text())
    assert 'every 24 h' in row.inner_text()
    row.locator('button', has_text='Run now').click()
    expect_text(page, '[data-testid=notice]', 'nightly-greeting was started')
    # The address bar shows the jobs page, not the POST-only action: a reload is a page.
    until(lambda: page.url.endswith('/admin/jobs'), what='the jobs page URL after Run now')
    assert page.reload().status == 200

    def counted():
        page.goto('/admin/jobs')
        runs = int(page.locator('tr[data-name=nightly-greeting] [data-testid=runs]').inner_text())
        return runs > before and 'ok' in page.locator('tr[data-name=nightly-greeting]').inner_text()
    until(counted, what='the run counted with its result')
    shot(page, 'jobs')


# --- KVDB --------------------------------------------------------------------------------

def test_kvdb_set_browse_read_and_delete(admin, cluster):
    page = admin
    nav(page, 'KVDB')
    page.fill('#kv-key', 'web/greeting')
    page.fill('#kv-value', 'hello from the browser')
    page.fill('#kv-expiry', '600')
    page.click('form.card button[type=submit]')
    expect_text(page, '[data-testid=notice]', 'web/greeting set')
    assert page.locator('[data-testid=kv-value]').inner_text() == 'hello from the browser'
    until(lambda: page.url.endswith('/admin/kvdb'), what='the KVDB page URL after a set')
    assert 'expires in' in page.content()
    r = cluster.api('GET', '/kvdb/web/greeting')
    assert r.json()['value'] == 'hello from the browser'
    page.fill('#prefix', 'web/')
    page.click('form.inline button:text("List")')
    page.click('[data-testid=keys] a:text("web/greeting")')
    expect_text(page, '[data-testid=kv-value]', 'hello from the browser')
    shot(page, 'kvdb')
    page.click('button.danger:text("Delete")')
    expect_text(page, '[data-testid=notice]', 'web/greeting deleted')
    assert page.dialogs[-1] == 'Delete the key web/greeting? There is no undo.', page.dialogs
    assert cluster.api('GET', '/kvdb/web/greeting').status_code == 404
    # An expiry that is not a number: the API's error, shown.
    page.fill('#kv-key', 'web/x')
    page.fill('#kv-expiry', 'soon')
    page.click('form.card button[type=submit]')
    expect_text(page, '[data-testid=error]', 'expiry must be a positive number')


# --- Live tail ---------------------------------------------------------------------------

def test_the_live_tail_shows_an_invocation_made_outside_the_browser(admin, cluster):
    page = admin
    nav(page, 'Live tail')
    expect_text(page, '[data-tail-status]', 'Following live')
    cid = 'tail-' + uuid.uuid4().hex[:12]
    r = cluster.api('POST', '/services/webadmin.echo/invoke', json={'x': 1}, headers={'X-Shoal-Cid': cid})
    assert r.status_code == 200
    page.wait_for_selector('#tail-rows code:text("{}")'.format(cid), timeout=15000)
    row = page.locator('#tail-rows tr', has_text=cid)
    assert 'webadmin.echo' in row.inner_text() and '200' in row.inner_text()
    shot(page, 'tail')


def test_a_failed_call_opens_from_the_tail_with_its_traceback_and_log_lines(admin, cluster):
    page = admin
    nav(page, 'Live tail')
    expect_text(page, '[data-tail-status]', 'Following live')
    cid = 'broken-' + uuid.uuid4().hex[:12]
    refused = 'nochan-' + uuid.uuid4().hex[:12]
    r = httpx.post(cluster.http_url + '/broken', json={'invoice': 'INV-42'}, headers={'X-Shoal-Cid': cid})
    assert r.status_code == 500
    assert 'invoice-not-in-ledger' not in r.text and 'Traceback' not in r.text, r.text
    r = httpx.post(cluster.http_url + '/no/such/path', json={}, headers={'X-Shoal-Cid': refused})
    assert r.status_code == 404
    # Both appear live, with their reasons; the gateway's own refusal included.
    page.wait_for_selector('#tail-rows code:text("{}")'.format(refused), timeout=15000)
    row = page.locator('#tail-rows tr', has_text=refused)
    assert '404' in row.inner_text() and 'no channel matches POST /no/such/path' in row.inner_text()
    page.wait_for_selector('#tail-rows code:text("{}")'.format(cid), timeout=15000)
    row = page.locator('#tail-rows tr', has_text=cid)
    assert '500' in row.inner_text() and 'LookupError' in row.inner_text(), row.inner_text()
    # "Failed only" keeps them and drops the successes.
    page.check('[data-testid=failed-only]')
    page.click('form[role=search] button[type=submit]')
    page.wait_for_selector('#tail-rows code:text("{}")'.format(cid), timeout=15000)
    assert all(' 200 ' not in ' {} '.format(t) for t in page.locator('#tail-rows tr td:nth-child(5)').all_inner_texts())
    # A click opens the call's page: the reason, the traceback and the service's log line.
    page.click('#tail-rows a:has(code:text("{}"))'.format(cid))
    expect_text(page, '[data-testid=call-cid]', cid)
    expect_text(page, '[data-testid=call-status]', '500')
    facts = page.locator('[data-testid=call-facts]').inner_text()
    assert 'failed (server error)' in facts and 'webadmin.broken' in facts and 'POST /broken' in facts, facts
    expect_text(page, '[data-testid=traceback]', 'LookupError: invoice-not-in-ledger')
    expect_text(page, '[data-testid=call-logs]', 'looking up invoice INV-42')
    shot(page, 'call')
    # The refusal's page names the request and its reason.
    page.goto(cluster.admin_url + '/admin/calls/' + refused)
    facts = page.locator('[data-testid=call-facts]').inner_text()
    assert 'refused (client error)' in facts and 'gateway' in facts and 'POST /no/such/path' in facts, facts
    assert page.locator('[data-testid=traceback]').count() == 0


# --- Dark mode and logout ----------------------------------------------------------------

def test_dark_mode_follows_the_system(browser, cluster):
    ctx = browser.new_context(viewport={'width': 1280, 'height': 900}, base_url=cluster.admin_url,
                              color_scheme='dark')
    page = ctx.new_page()
    login(page)
    page.wait_for_url('**/admin/')
    bg = page.evaluate('getComputedStyle(document.body).backgroundColor')
    assert bg == 'rgb(17, 20, 24)', bg
    shot(page, 'dashboard-dark')
    ctx.close()


def test_logout_ends_the_session(admin, cluster):
    page = admin
    cookie = [c for c in page.context.cookies() if c['name'] == 'shoal_session'][0]['value']
    page.click('header button:text("Log out")')
    page.wait_for_url('**/admin/login')
    page.goto('/admin/services')
    assert '/admin/login' in page.url
    # The old cookie is dead on the server too, not only forgotten by the browser.
    r = httpx.get(cluster.admin_url + '/admin/services', cookies={'shoal_session': cookie})
    assert r.status_code == 303 and r.headers['location'] == '/admin/login?next=%2Fadmin%2Fservices'


# --- Team: users, roles, tokens, the audit trail -----------------------------------------

def login_as(page, user, password):
    page.goto('/admin/login')
    page.fill('#username', user)
    page.fill('#password', password)
    page.click('button[type=submit]')
    page.wait_for_url('**/admin/')


def test_an_admin_adds_a_user_and_a_token_and_reads_the_audit(admin, cluster):
    page = admin
    nav(page, 'Team')
    name = 'web-' + uuid.uuid4().hex[:6]
    page.fill('#u-name', name)
    page.select_option('#u-role', 'viewer')
    page.fill('#u-pass', 'a-long-password-1')
    page.click('[data-testid=user-form] button[type=submit]')
    expect_text(page, '[data-testid=notice]', 'user {} added'.format(name))
    until(lambda: page.url.endswith('/admin/team'), what='the team page URL after adding a user')
    assert page.reload().status == 200
    row = page.locator('tr[data-name="{}"]'.format(name))
    row.locator('select').select_option('operator')
    row.locator('button', has_text='Save').click()
    expect_text(page, '[data-testid=notice]', '{} is now operator'.format(name))
    users = {u['name']: u['role'] for u in cluster.api('GET', '/users').json()['users']}
    assert users[name] == 'operator'
    # A token for that user: shown once, then only its id.
    page.fill('#tok-desc', 'browser test')
    page.fill('#tok-exp', '1d')
    page.fill('#tok-user', name)
    page.click('[data-testid=token-form] button[type=submit]')
    expect_text(page, '[data-testid=notice]', 'copy it now')
    token = page.locator('[data-testid=new-token]').inner_text().strip()
    assert token.startswith('shoal_'), token
    r = httpx.get(cluster.admin_url + '/api/v1/services', headers={'authorization': 'Bearer ' + token})
    assert r.status_code == 200
    page.goto('/admin/team')
    assert page.locator('[data-testid=new-token]').count() == 0
    assert token not in page.content()
    shot(page, 'team')
    # The audit page shows those changes, by admin through the web.
    nav(page, 'Audit')
    page.fill('#a-kind', 'user')
    page.click('form.inline button:text("Filter")')
    expect_text(page, '[data-testid=audit]', name)
    text = page.locator('[data-testid=audit]').inner_text()
    assert 'web, 127.0.0.1' in text and 'role: viewer → operator' in text, text
    shot(page, 'audit')
    # Delete the user (confirmed): the token dies with it.
    nav(page, 'Team')
    page.locator('tr[data-name="{}"] button.danger'.format(name)).click()
    expect_text(page, '[data-testid=notice]', 'user {} deleted'.format(name))
    assert page.dialogs[-1].startswith('Delete the user {}'.format(name)), page.dialogs
    r = httpx.get(cluster.admin_url + '/api/v1/services', headers={'authorization': 'Bearer ' + token})
    assert r.status_code == 401


def test_a_viewer_browses_every_page_but_changes_nothing(page, cluster):
    name = 'view-' + uuid.uuid4().hex[:6]
    r = cluster.api('POST', '/users', json={'name': name, 'role': 'viewer', 'password': 'a-long-password-2'})
    assert r.status_code == 201, r.text
    login_as(page, name, 'a-long-password-2')
    assert page.locator('[data-testid=who]').inner_text() == '{} · viewer'.format(name)
    # No Audit in the navigation; the page itself answers 403.
    assert page.locator('nav a:text-is("Audit")').count() == 0
    for path in ['/admin/', '/admin/services', '/admin/services/webadmin.greet', '/admin/deploy',
                 '/admin/channels', '/admin/outgoing', '/admin/security', '/admin/jobs', '/admin/kvdb',
                 '/admin/tail', '/admin/team']:
        assert page.goto(path).status == 200, path
    assert page.goto('/admin/audit').status == 403
    assert 'needs the admin role' in page.content()
    # An action: the API's 403, shown on the page; nothing ran.
    page.goto('/admin/jobs')
    runs = cluster.api('GET', '/jobs/nightly-greeting').json().get('runs')
    page.locator('tr[data-name=nightly-greeting] button', has_text='Run now').click()
    expect_text(page, '[data-testid=error]', 'needs the operator role; user {} has viewer'.format(name))
    assert cluster.api('GET', '/jobs/nightly-greeting').json().get('runs') == runs
    # Their own token, though, they may make.
    page.goto('/admin/team')
    assert page.locator('[data-testid=users]').count() == 0
    page.click('[data-testid=token-form] button[type=submit]')
    expect_text(page, '[data-testid=notice]', 'created for {}'.format(name))
    cluster.api('DELETE', '/users/' + name)


# --- Many services, small screens ---------------------------------------------------------

def test_300_services_are_paged_sorted_and_filtered(admin, cluster):
    page = admin
    src = 'from zato.server.service import Service\n\n' + ''.join(
        "class S{0}(Service):\n    name = 'many.s{0:03d}'\n\n    def handle(self):\n"
        "        if self.request.payload == 'fail':\n            raise ValueError('no')\n\n".format(i)
        for i in range(300))
    r = cluster.api('POST', '/deploy', json={'files': [{'name': 'many_services.py', 'source': src}]})
    assert r.status_code == 200, r.text
    until(lambda: len([s for s in cluster.api('GET', '/services').json()['services']
                       if s['name'].startswith('many.')]) == 300, what='300 services loaded')
    cluster.api('POST', '/services/many.s123/invoke', json='fail')
    for _ in range(3):
        cluster.api('POST', '/services/many.s007/invoke', json={})
    page.goto('/admin/services?q=many.')
    assert page.locator('[data-testid=services-count]').inner_text().startswith('300 service(s) · page 1 of 6')
    assert page.locator('tr[data-service]').count() == 50
    height = page.evaluate('document.documentElement.scrollHeight')
    assert height < 6000, height
    page.click('[data-testid=pager] a[rel=next]')
    page.wait_for_selector('tr[data-service="many.s050"]')
    assert 'page 2 of 6' in page.locator('[data-testid=services-count]').inner_text()
    # Sorted by calls: the one called three times first; failing only: the one that raised.

    def first_by_calls():
        page.goto('/admin/services?q=many.&sort=calls')
        return page.locator('tr[data-service]').first.get_attribute('data-service') == 'many.s007'
    until(first_by_calls, what='the most called service first')
    page.goto('/admin/services?q=many.')
    page.check('#failing')
    until(lambda: page.locator('tr[data-service]').count() == 1, what='failing only')
    assert page.locator('tr[data-service]').first.get_attribute('data-service') == 'many.s123'
    assert '/admin/services?' in page.url and 'failing=1' in page.url
    shot(page, 'services-failing')


PAGES_390 = ['/admin/', '/admin/services', '/admin/services/webadmin.greet', '/admin/deploy',
             '/admin/channels', '/admin/channels/new?type=http', '/admin/outgoing', '/admin/security',
             '/admin/jobs', '/admin/kvdb', '/admin/tail', '/admin/team', '/admin/audit']


def test_every_page_fits_a_390_pixel_phone(browser, cluster):
    ctx = browser.new_context(viewport={'width': 390, 'height': 844}, base_url=cluster.admin_url)
    page = ctx.new_page()
    console = []
    page.on('console', lambda m: console.append(m.text) if m.type == 'error' else None)
    login(page)
    page.wait_for_url('**/admin/')
    wide = {}
    for path in PAGES_390:
        assert page.goto(path).status == 200, path
        w = page.evaluate('document.documentElement.scrollWidth')
        if w > 390:
            wide[path] = w
    shot(page, 'audit-390')
    ctx.close()
    assert wide == {}, 'pages wider than 390 px: {}'.format(wide)
    assert console == [], console


def test_forms_are_per_type_with_labels_for_people(admin, cluster):
    page = admin
    page.goto('/admin/jobs/new')
    # A job's form is its type's: an interval job has no cron field, a cron job no hours.
    assert page.locator('#pick-type option').all_inner_texts() == ['interval', 'cron', 'one_time']
    assert page.locator('#f-hours').count() == 1 and page.locator('#f-cron').count() == 0
    assert page.locator('.field').count() < 16
    page.goto('/admin/jobs/new?type=cron')
    assert page.locator('#f-cron').count() == 1 and page.locator('#f-hours').count() == 0
    page.goto('/admin/jobs/new?type=interval')
    assert page.locator('label[for=f-is_active]').inner_text() == 'Active'
    page.fill('#f-name', 'per-type')
    page.fill('#f-service', 'webadmin.greet')
    page.fill('#f-hours', '2')
    page.uncheck('#f-is_active')
    page.click('form.object button[type=submit]')
    expect_text(page, '[data-testid=notice]', 'per-type saved')
    job = cluster.api('GET', '/jobs/per-type').json()
    assert (job['type'], job['hours'], job['is_active']) == ('interval', 2, False), job
    # Editing it comes back as the interval form.
    page.goto('/admin/jobs/per-type')
    assert page.input_value('#f-hours') == '2' and page.locator('#f-cron').count() == 0
    cluster.api('DELETE', '/jobs/per-type')
    page.goto('/admin/channels/new?type=http')
    assert page.locator('label[for=f-url_path]').inner_text().startswith('URL path')


def test_an_operator_runs_jobs_but_changes_no_channel(page, cluster):
    name = 'oper-' + uuid.uuid4().hex[:6]
    r = cluster.api('POST', '/users', json={'name': name, 'role': 'operator', 'password': 'a-long-password-3'})
    assert r.status_code == 201, r.text
    login_as(page, name, 'a-long-password-3')
    for path in PAGES_390[:-1]:
        assert page.goto(path).status == 200, path
    assert page.goto('/admin/audit').status == 403
    page.goto('/admin/jobs')
    page.locator('tr[data-name=nightly-greeting] button', has_text='Run now').click()
    expect_text(page, '[data-testid=notice]', 'nightly-greeting was started')
    page.goto('/admin/channels/new?type=http')
    page.fill('#f-name', 'oper-made')
    page.fill('#f-service', 'webadmin.greet')
    page.fill('#f-url_path', '/oper-made')
    page.click('form.object button[type=submit]')
    expect_text(page, '[role=alert]', 'needs the admin role; user {} has operator'.format(name))
    assert cluster.api('GET', '/channels/oper-made').status_code == 404
    cluster.api('DELETE', '/users/' + name)
