"""The README's screenshot of the explanation page: serve an export, type a text into the page in
headless Chromium (as tests/test_page.py drives it), click Explain, save a PNG.

    python docs/screenshot.py [--model_base_path pb_model/textcnn] [--text ...] [--out docs/page.png]

Needs an export with the explain signature (``python train.py --config_path=config/textcnn_config.json``)
and Debian's chromium and chromium-driver; Chinese text needs a CJK font (``apt-get install fonts-wqy-zenhei``),
which the tests do not.
"""

from __future__ import annotations

import argparse
import base64
import os
import shutil
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model_base_path", default=os.path.join(REPO, "pb_model", "textcnn"))
    ap.add_argument("--model_name", default="textcnn")
    ap.add_argument("--text", default="这家店的菜很好吃，服务也很周到，就是上菜有点慢")
    ap.add_argument("--method", default="auto")
    ap.add_argument("--out", default=os.path.join(REPO, "docs", "page.png"))
    args = ap.parse_args(argv)

    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import Select, WebDriverWait

    from serving.server import BackgroundServer
    from tests.test_page import start_chromium

    profile = tempfile.mkdtemp(prefix="textcls-chromium-")
    driver = start_chromium(profile, 820, 900)
    try:
        with BackgroundServer(args.model_base_path, args.model_name, poll_seconds=60) as srv:
            driver.get(srv.url + "/")
            wait = WebDriverWait(driver, 60)
            wait.until(ec.text_to_be_present_in_element((By.ID, "version"), "version"))
            driver.find_element(By.ID, "text").send_keys(args.text)
            Select(driver.find_element(By.ID, "method")).select_by_value(args.method)
            driver.find_element(By.ID, "explain").click()
            wait.until(ec.visibility_of_element_located((By.ID, "result")))
            height = driver.execute_script("return Math.ceil(document.querySelector('main').getBoundingClientRect().bottom) + 12")
            shot = driver.execute_cdp_cmd("Page.captureScreenshot", {  # the whole page, not just the window
                "format": "png", "captureBeyondViewport": True,
                "clip": {"x": 0, "y": 0, "width": 820, "height": height, "scale": 1}})
            with open(args.out, "wb") as f:
                f.write(base64.b64decode(shot["data"]))
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
