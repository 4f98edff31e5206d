"""The results page in a real browser: headless Chromium (Debian's) loads it from a small real run; every app
section is there, every image decoded (non-zero natural size), and the screenshot is not blank."""
import json
import os
import shutil
import socket
import subprocess
import time
import urllib.request

import pytest

from tests.conftest import in_process

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
APPS = ("forecast", "ais", "graph", "spiking", "traffic", "audio", "core")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Browser:
    """Headless Chromium on loopback, driven over the DevTools protocol (one page)."""

    def __init__(self, tmp_path):
        import websocket  # websocket-client (the test extra)

        port = _free_port()
        self.proc = subprocess.Popen([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                                      f"--remote-debugging-port={port}", "--remote-allow-origins=*",
                                      f"--user-data-dir={tmp_path / 'chromium'}", "--window-size=1200,900",
                                      "about:blank"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(100):
            try:
                targets = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/json", timeout=2))
                page = next(t for t in targets if t["type"] == "page")
                break
            except (OSError, StopIteration):
                time.sleep(0.2)
        else:
            self.close()
            raise RuntimeError("chromium did not open its DevTools port")
        self.ws = websocket.create_connection(page["webSocketDebuggerUrl"], timeout=60)
        self.n = 0

    def call(self, method: str, **params):
        self.n += 1
        self.ws.send(json.dumps({"id": self.n, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == self.n:
                if "error" in msg:
                    raise RuntimeError(msg["error"])
                return msg["result"]

    def open(self, url: str) -> None:
        self.call("Page.enable")
        self.call("Page.navigate", url=url)
        for _ in range(100):
            if self.eval("document.readyState") == "complete":
                return
            time.sleep(0.1)
        raise RuntimeError(f"{url} did not finish loading")

    def eval(self, expression: str):
        return self.call("Runtime.evaluate", expression=expression, returnByValue=True)["result"].get("value")

    def close(self) -> None:
        if getattr(self, "ws", None):
            self.ws.close()
        self.proc.terminate()
        self.proc.wait(timeout=30)


def page_state(browser: Browser, url: str) -> dict:
    browser.open(url)
    return browser.eval("""JSON.stringify({
        sections: Array.from(document.querySelectorAll('h2[id]')).map(h => h.id),
        images: Array.from(document.images).map(i => ({alt: i.alt, w: i.naturalWidth, h: i.naturalHeight})),
    })""")


def screenshot_is_not_blank(browser: Browser, path) -> bool:
    import base64

    import matplotlib.image

    data = browser.call("Page.captureScreenshot", format="png")["data"]
    path.write_bytes(base64.b64decode(data))
    pixels = matplotlib.image.imread(path)
    return float(pixels[..., :3].std()) > 0.02


def make_report(capsys, tmp_path):
    """A small real run of the graph job and bench, then the report page from the test's MLflow store."""
    from pipelines.bench.__main__ import main as bench
    from pipelines.graph import GraphJob
    from pipelines.report.__main__ import main as report
    from pipelines.runner import run

    run(GraphJob(), ["--trainer.enable_progress_bar", "false"])  # the default job (200 epochs of GCN on Cora)
    assert in_process(capsys, bench, ["graph", "--sections", "node", "init", "--seeds", "0", "--depths", "2", "4"])[0] == 0
    code, out, err = in_process(capsys, report, ["--out", str(tmp_path / "results"), "--no-readme",
                                                 "--html", str(tmp_path / "html")])
    assert code == 0, err
    return tmp_path / "html" / "index.html"


@pytest.mark.skipif(CHROMIUM is None and not os.environ.get("FFN_REQUIRE_BROWSER"), reason="no chromium")
def test_results_page_loads_in_chromium_with_every_section_and_image(capsys, tmp_path):
    assert CHROMIUM, "FFN_REQUIRE_BROWSER is set but chromium is not installed (apt-get install chromium)"
    index = make_report(capsys, tmp_path)
    browser = Browser(tmp_path)
    try:
        state = json.loads(page_state(browser, index.as_uri()))
        assert state["sections"] == list(APPS)
        imgs = state["images"]
        assert any(i["alt"].startswith("graph: confusion_test") for i in imgs)  # the job's own figures
        assert any(i["alt"] == "graph init" for i in imgs)  # a plot drawn from the bench table
        assert all(i["w"] > 0 and i["h"] > 0 for i in imgs), [i for i in imgs if not i["w"]]
        assert screenshot_is_not_blank(browser, tmp_path / "screenshot.png")

        broken = tmp_path / "html" / "broken.html"  # the check fails when an image does not decode
        text = index.read_text()
        start = text.index("base64,") + len("base64,")
        broken.write_text(text[:start] + "AAAA" + text[start + 4:])
        state = json.loads(page_state(browser, broken.as_uri()))
        assert not all(i["w"] > 0 for i in state["images"])
    finally:
        browser.close()
