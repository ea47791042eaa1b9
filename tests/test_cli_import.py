"""`tertulia import products|customers`: valid rows stored as events, rejected rows reported, re-runs idempotent."""

import json
import os
import subprocess
import sys
from decimal import Decimal
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from tertulia.catalog.models import Category, Product
from tertulia.customers.models import Consent, ConsentChange, Customer, Identity
from tertulia.events.models import Event

PRODUCTS = """\
sku,title,description,url,image_url,price,currency,stock,category_id,category_name,parent_category_id
ACE-001,Aceite de oliva virgen extra 500 ml,Picual de Jaén,https://tienda.example/p/ace-001,https://tienda.example/i/ace-001.jpg,12.50,EUR,40,aceites,Aceites,despensa
ACE-002,Vinagre de Jerez 250 ml,,https://tienda.example/p/ace-002,,"7,90",EUR,25,aceites,Aceites,despensa
CAF-001,Té verde 100 g,,,,8.40,EUR,not-a-number,cafes,,
,Sin referencia,,,,3.00,EUR,5,,,
QUE-001,Queso manchego 1 kg,,ftp://tienda.example/que,,-5,EUR,12,quesos,Quesos,
DUL-001,Turrón de Jijona 300 g,,,,9.90,,,,,
"""

CUSTOMERS = """\
email,phone,first_name,last_name,language,timezone,external_id,email_consent,sms_consent,instagram
lucia@example.com,+34 612 345 678,Lucía,Fernández,es,Europe/Madrid,C-1,subscribed,unsubscribed,@Lucia.Cocina
emma@example.co.uk,,Emma,Clarke,EN,Europe/London,C-2,sí,,
not-an-email,,Pedro,Gómez,es,Europe/Madrid,C-3,subscribed,,
ana@example.com,+34 600,Ana,Ruiz,klingon,Mars/Olympus,C-4,maybe,,
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def run_import(*args: str) -> str:
    out = StringIO()
    call_command("import", *args, "--no-progress", stdout=out, stderr=StringIO())
    return out.getvalue()


def test_products_valid_rows_are_imported_and_invalid_rows_reported(store, tmp_path):
    csv_path = write(tmp_path, "products.csv", PRODUCTS)
    report_path = tmp_path / "report.json"

    output = run_import("products", str(csv_path), "--store", store.slug, "--report", str(report_path))

    products = {p.sku: p for p in Product.objects.for_store(store)}
    assert set(products) == {"ACE-001", "ACE-002", "DUL-001"}
    assert products["ACE-002"].price == Decimal("7.90")  # Spanish decimal comma accepted
    assert products["ACE-001"].stock == 40
    assert products["DUL-001"].currency == "EUR"  # the store's currency when the row gives none
    aceites = Category.objects.for_store(store).get(external_id="aceites")
    assert aceites.name == "Aceites"
    assert aceites.parent.external_id == "despensa"
    assert products["ACE-001"].category == aceites
    assert Event.objects.for_store(store).filter(source="import", type="product_upserted").count() == 3

    report = json.loads(report_path.read_text())
    assert (report["rows"], report["imported"], report["rejected"], report["unchanged"]) == (6, 3, 3, 0)
    problems = {(p["line"], p["field"], p["code"]) for p in report["problems"]}
    assert problems == {
        (4, "stock", "invalid_type"),
        (5, "sku", "required"),
        (6, "url", "invalid_url"),
        (6, "price", "out_of_range"),
    }
    assert "Rejected rows (3)" in output
    assert "invalid_url" in output and "Must be an http(s) URL." in output


def test_rerun_stores_nothing_twice_and_a_changed_row_updates(store, tmp_path):
    csv_path = write(tmp_path, "products.csv", PRODUCTS)
    run_import("products", str(csv_path), "--store", store.slug)
    events_before = Event.objects.for_store(store).count()
    report_path = tmp_path / "again.json"

    run_import("products", str(csv_path), "--store", store.slug, "--report", str(report_path))

    assert Event.objects.for_store(store).count() == events_before
    assert Product.objects.for_store(store).count() == 3
    report = json.loads(report_path.read_text())
    assert (report["imported"], report["unchanged"], report["events_created"]) == (0, 3, 0)

    changed = write(tmp_path, "changed.csv", PRODUCTS.replace("12.50,EUR,40", "13.00,EUR,38"))
    run_import("products", str(changed), "--store", store.slug)
    product = Product.objects.for_store(store).get(sku="ACE-001")
    assert (product.price, product.stock) == (Decimal("13.00"), 38)
    assert Product.objects.for_store(store).count() == 3


def test_customers_import_identities_profile_and_consent(store, tmp_path):
    csv_path = write(tmp_path, "clientes.csv", CUSTOMERS)
    report_path = tmp_path / "report.json"

    run_import("customers", str(csv_path), "--store", store.slug, "--report", str(report_path))

    assert Customer.objects.for_store(store).count() == 2
    lucia = Identity.objects.for_store(store).get(kind="email", value="lucia@example.com").customer
    assert (lucia.first_name, lucia.language, lucia.timezone) == ("Lucía", "es", "Europe/Madrid")
    kinds = dict(Identity.objects.filter(customer=lucia).values_list("kind", "value"))
    assert kinds == {"email": "lucia@example.com", "phone": "+34612345678", "external": "C-1",
                     "instagram": "lucia.cocina"}
    consents = dict(Consent.objects.filter(customer=lucia).values_list("channel", "status"))
    assert consents == {"email": "subscribed", "sms": "unsubscribed"}
    change = ConsentChange.objects.get(customer=lucia, channel="email")
    assert change.source == "import"
    assert (change.evidence["file"], change.evidence["line"]) == ("clientes.csv", 2)
    emma = Identity.objects.for_store(store).get(kind="email", value="emma@example.co.uk").customer
    assert emma.language == "en"
    assert Consent.objects.get(customer=emma, channel="email").status == "subscribed"  # "sí" means yes

    problems = {(p["line"], p["field"], p["code"]) for p in json.loads(report_path.read_text())["problems"]}
    assert problems == {
        (4, "email", "invalid_email"),
        (5, "phone", "invalid_phone"),
        (5, "language", "invalid_language"),
        (5, "timezone", "invalid_timezone"),
        (5, "email_consent", "invalid_choice"),
    }
    assert not Identity.objects.for_store(store).filter(value__in=["ana@example.com", "C-3", "C-4"]).exists()

    run_import("customers", str(csv_path), "--store", store.slug)
    assert Customer.objects.for_store(store).count() == 2
    assert ConsentChange.objects.for_store(store).count() == 3


def test_semicolon_separated_file_from_a_spanish_spreadsheet(store, tmp_path):
    csv_path = tmp_path / "excel.csv"
    csv_path.write_bytes("\ufeffsku;title;price\nQUE-002;Queso Idiazabal;15,80\n".encode())

    run_import("products", str(csv_path), "--store", store.slug)

    assert Product.objects.for_store(store).get(sku="QUE-002").price == Decimal("15.80")


def test_strict_exits_3_when_rows_are_rejected_but_keeps_the_valid_ones(store, tmp_path):
    csv_path = write(tmp_path, "products.csv", PRODUCTS)
    with pytest.raises(SystemExit) as exit_info:
        run_import("products", str(csv_path), "--store", store.slug, "--strict")
    assert exit_info.value.code == 3
    assert Product.objects.for_store(store).count() == 3


def test_unusable_input_is_an_error(store, other_store, tmp_path):
    good = write(tmp_path, "products.csv", PRODUCTS)
    with pytest.raises(CommandError, match="Unknown store 'nope'"):
        run_import("products", str(good), "--store", "nope")
    with pytest.raises(CommandError, match="No such file"):
        run_import("products", str(tmp_path / "missing.csv"), "--store", store.slug)
    no_title = write(tmp_path, "no-title.csv", "sku,price\nA-1,3.00\n")
    with pytest.raises(CommandError, match="lacks required column.*title"):
        run_import("products", str(no_title), "--store", store.slug)
    no_identity = write(tmp_path, "people.csv", "first_name,last_name\nAna,Ruiz\n")
    with pytest.raises(CommandError, match="identity column"):
        run_import("customers", str(no_identity), "--store", store.slug)
    empty = write(tmp_path, "empty.csv", "")
    with pytest.raises(CommandError, match="empty"):
        run_import("products", str(empty), "--store", store.slug)
    assert not Product.objects.exists()


def test_rows_go_only_to_the_named_store(store, other_store, tmp_path):
    run_import("products", str(write(tmp_path, "p.csv", PRODUCTS)), "--store", other_store.slug)
    assert Product.objects.for_store(other_store).count() == 3
    assert not Product.objects.for_store(store).exists()


def _console(home: Path, *args: str) -> subprocess.CompletedProcess:
    env = {key: value for key, value in os.environ.items() if key != "DATABASE_URL"}
    env["TERTULIA_HOME"] = str(home)
    tertulia = Path(sys.executable).with_name("tertulia")
    return subprocess.run([str(tertulia), *args], env=env, capture_output=True, text=True, timeout=120, check=False)


@pytest.mark.slow
def test_console_script(tmp_path):
    """The `tertulia` entry point end to end, on its own SQLite database under a fresh $TERTULIA_HOME."""
    home = tmp_path / "home"
    assert _console(home, "migrate", "-v", "0").returncode == 0
    created = _console(home, "shell", "-c",
                       "from tertulia.core.services import store_create; store_create(slug='tienda', name='Tienda')")
    assert created.returncode == 0, created.stderr
    csv_path = write(tmp_path, "products.csv", PRODUCTS)
    report_path = tmp_path / "report.json"

    first = _console(home, "import", "products", str(csv_path), "--store", "tienda", "--report", str(report_path))

    assert first.returncode == 0, first.stderr
    assert "6/6" in first.stderr  # the progress bar, on stderr
    assert "3 imported" in first.stdout and "3 rejected" in first.stdout
    assert len(json.loads(report_path.read_text())["problems"]) == 4

    again = _console(home, "import", "products", str(csv_path), "--store", "tienda", "--strict")
    assert again.returncode == 3
    assert "0 imported, 3 unchanged" in again.stdout

    unknown = _console(home, "import", "products", str(csv_path), "--store", "nope")
    assert unknown.returncode == 1
    assert "Unknown store 'nope'" in unknown.stderr
