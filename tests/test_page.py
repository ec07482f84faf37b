"""The explanation page at ``/`` and report.html, in a real browser (Debian's headless Chromium,
driven by Selenium), and a word model's explanations over REST spanning the raw text.

The browser is /usr/bin/chromium with /usr/bin/chromedriver (``apt-get install chromium
chromium-driver``, as the README's test command does); CHROMIUM and CHROMEDRIVER override them.
"""

from __future__ import annotations

import os
import shutil
import tempfile

import pytest

from data_helpers.config import load_config
from tests.conftest import KEYWORDS, planted_lines, quiet, tiny_config
from tests.test_server import call

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver")
WAIT = 60  # seconds for anything the page does


def train(root, planted, model_name, **overrides):
    from predictors import Predictor
    from trainers.trainer import Trainer

    path = tiny_config(root, planted, model_name, export_explain=True, epochs=4, learning_rate=0.02, keep_prob=1.0,
                       eval_every=50, checkpoint_every=50, **overrides)
    cfg = load_config(path, log=quiet)
    report = Trainer(cfg, log=quiet, verbose=0).train()
    return cfg, report, Predictor(path)


@pytest.fixture(scope="module")
def attention_model(planted_trained):
    """The planted-task BiLSTM-attention model test_explain uses too (trained once per run)."""
    from predictors import Predictor

    path, report = planted_trained("bilstm_atten")
    return load_config(path, log=quiet), report, Predictor(path)


def start_chromium(profile: str, width: int = 1000, height: int = 900):
    """Debian's headless Chromium under ChromeDriver (Selenium), with its profile in ``profile``."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    for what, path in (("Chromium", CHROMIUM), ("ChromeDriver", CHROMEDRIVER)):
        assert os.path.isfile(path), (f"{what} not found at {path}: install Debian's chromium and chromium-driver "
                                      "(the README's test command does), or set CHROMIUM / CHROMEDRIVER")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    # As root and with no network: no sandbox, no GPU, and none of Chromium's background calls home.
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-extensions", f"--window-size={width},{height}", f"--user-data-dir={profile}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(WAIT)
    return driver


@pytest.fixture(scope="module")
def browser():
    profile = tempfile.mkdtemp(prefix="textcls-chromium-")
    driver = start_chromium(profile)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def test_the_page_shows_the_label_and_shades_the_keyword(attention_model, planted, browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import Select, WebDriverWait

    from serving.server import BackgroundServer

    cfg, _, predictor = attention_model
    text, label = planted_lines(1, 7)[0].split("\t")
    keyword = next(k for k, v in KEYWORDS.items() if v == label)
    assert predictor.predict(text) == label
    wait = WebDriverWait(browser, WAIT)
    with BackgroundServer(cfg.pb_model_path, "planted", poll_seconds=30) as srv:
        browser.get(srv.url + "/")
        wait.until(ec.text_to_be_present_in_element((By.ID, "version"), "version"))
        assert Select(browser.find_element(By.ID, "model")).first_selected_option.text == "planted"
        version = os.path.basename(predictor.export_dir)
        assert browser.find_element(By.ID, "version").text == f"version {version}"

        def explain(method):
            Select(browser.find_element(By.ID, "method")).select_by_value(method)
            browser.execute_script("document.getElementById('result').hidden = true")
            browser.find_element(By.ID, "explain").click()
            wait.until(ec.visibility_of_element_located((By.ID, "result")))
            assert not browser.find_element(By.ID, "error").is_displayed(), browser.find_element(By.ID, "error").text
            return browser.find_element(By.CSS_SELECTOR, "#labels tr.predicted td.name").text

        box = browser.find_element(By.ID, "text")
        box.clear()
        box.send_keys(text)
        for method in ("integrated_gradients", "attention"):
            assert explain(method) == label
            tokens = browser.find_elements(By.CSS_SELECTOR, "#tokens .tok")
            assert "".join(t.text for t in tokens) in text.replace(" ", "")  # the text, tokens in order
            assert browser.find_element(By.ID, "tokens").get_attribute("textContent") == text  # each character once, in place
            scored = [(float(t.get_attribute("data-score")), t) for t in tokens]
            assert all(t.value_of_css_property("background-color") != "rgba(0, 0, 0, 0)" for s, t in scored if s != 0)
            if method == "integrated_gradients":  # the planted keyword scores highest (test_explain checks how often)
                top = max(scored, key=lambda st: st[0])[1]
                assert keyword in top.text or top.text in keyword, (top.text, keyword)
            else:
                assert abs(sum(s for s, _ in scored) - 1.0) < 1e-4  # attention weights sum to 1
            assert method.split("_")[0] in browser.find_element(By.ID, "explained").text
        bars = browser.find_elements(By.CSS_SELECTOR, "#labels tr")
        assert sorted(b.get_attribute("data-label") for b in bars) == sorted(predictor.classes_)
        other = next(b for b in bars if b.get_attribute("data-label") != label)
        wanted = other.get_attribute("data-label")
        other.click()  # explain another label
        wait.until(ec.text_to_be_present_in_element((By.ID, "explained"), wanted))
        assert browser.find_element(By.CSS_SELECTOR, "#labels tr.explained").get_attribute("data-label") == wanted
        shot = tmp_path / "page.png"
        assert browser.save_screenshot(str(shot)) and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

        box.clear()  # a model error reaches the page as its message
        Select(browser.find_element(By.ID, "method")).select_by_value("attention")
        browser.execute_script("document.getElementById('method').options[0].value = 'nonsense'")
        Select(browser.find_element(By.ID, "method")).select_by_index(0)
        browser.find_element(By.ID, "explain").click()
        wait.until(ec.visibility_of_element_located((By.ID, "error")))
        assert "method" in browser.find_element(By.ID, "error").text


def test_the_page_needs_nothing_from_the_network(attention_model):
    from serving.server import BackgroundServer

    import re
    import urllib.request

    cfg, _, _ = attention_model

    with BackgroundServer(cfg.pb_model_path, "planted", poll_seconds=30) as srv:
        page = urllib.request.urlopen(srv.url + "/", timeout=30).read().decode("utf-8")
        refs = re.findall(r'(?:src|href)="([^"]+)"', page)
        assert refs and all(r.startswith("/ui/") for r in refs), refs
        for r in refs:
            with urllib.request.urlopen(srv.url + r, timeout=30) as got:
                body = got.read().decode("utf-8")
            assert got.status == 200 and body
            assert "http" not in body.replace("HTTP ${r.status}", "")  # no address outside this server
        status, out = call(srv.url + "/ui/../server.py")
        assert status == 404 or status == 400, out
        assert '["planted"]' in page


def test_report_html_shows_the_confusion_matrix(attention_model, browser):
    from selenium.webdriver.common.by import By

    cfg, report, _ = attention_model
    path = os.path.join(cfg.output_path, "report.html")
    browser.get("file://" + path)
    labels = report["confusion_matrix"]["labels"]
    cells = browser.find_elements(By.CSS_SELECTOR, "svg.matrix rect.cell")
    assert len(cells) == len(labels) ** 2
    matrix = report["confusion_matrix"]["rows_true_cols_predicted"]
    for cell in cells:
        i, j = labels.index(cell.get_attribute("data-true")), labels.index(cell.get_attribute("data-predicted"))
        assert int(cell.get_attribute("data-count")) == matrix[i][j]
    shown = browser.find_element(By.CSS_SELECTOR, "svg.matrix").text
    assert all(name in shown for name in labels)
    assert len(browser.find_elements(By.CSS_SELECTOR, "svg.bars")) == 1
    assert browser.find_elements(By.CSS_SELECTOR, "svg.curve polyline")
    assert browser.find_element(By.ID, "worst").is_displayed()


def test_a_word_model_explains_raw_text_over_rest(planted, tmp_path_factory):
    from serving.server import BackgroundServer

    cfg, _, predictor = train(tmp_path_factory.mktemp("word"), planted, "textcnn", tokenizer="word")
    text = "今天" + planted_lines(1, 11)[0].split("\t")[0].replace(" ", "") + "，很好！"
    mine = predictor.explain(text, method="integrated_gradients")
    with BackgroundServer(cfg.pb_model_path, "w", poll_seconds=30) as srv:
        status, out = call(f"{srv.url}/v1/models/w:predict", {
            "signature_name": "explain", "instances": [{"text": text, "method": "integrated_gradients", "label": ""}]})
    assert status == 200, out
    got = out["predictions"][0]
    n = len(mine["tokens"])
    assert got["tokens"][:n] == [t["token"] for t in mine["tokens"]]
    assert [(a, b) for a, b in zip(got["starts"][:n], got["ends"][:n])] == [(t["start"], t["end"]) for t in mine["tokens"]]
    for tok, a, b in zip(got["tokens"][:n], got["starts"][:n], got["ends"][:n]):
        assert a >= 0 and text[a:b] == tok  # spans index the raw text the client sent
    assert got["classes"] == list(predictor.classes_)
    assert abs(sum(got["probabilities"]) - 1.0) < 1e-5 and got["label"] == mine["label"]
