// Drives Debian's chromium (playwright-core from .node/, no browser download) through the
// dashboard's HLS player: plays the stream, switches the audio language and the subtitles.
// Usage: node dashboard_hls.cjs <dashboard url> <api token> <stream id> <screenshot path>
// Prints one JSON line with what it saw; exits non-zero on a failure.
"use strict";
const path = require("path");
const { chromium } = require(path.join(process.env.LIVEDUB_NODE_MODULES, "playwright-core"));

const [url, token, sid, shot] = process.argv.slice(2);
const FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--autoplay-policy=no-user-gesture-required"];

async function main() {
  const browser = await chromium.launch({ executablePath: "/usr/bin/chromium", headless: true, args: FLAGS });
  const seen = { errors: [] };
  try {
    const page = await browser.newPage();
    page.on("pageerror", (e) => seen.errors.push(String(e)));
    const log = [];
    page.on("console", (m) => log.push(m.type() + ": " + m.text()));
    page.on("requestfailed", (r) => log.push("failed: " + r.url() + " " + (r.failure() || {}).errorText));
    await page.goto(url);
    await page.fill("#token", token);
    await page.dispatchEvent("#token", "change");
    const player = `window.livedubPlayers && window.livedubPlayers[${JSON.stringify(sid)}]`;
    try {
      await page.waitForFunction(`${player} && ${player}.video.currentTime > 1`, null, { timeout: 20000 });
    } catch (e) {
      const state = await page.evaluate(`(() => { const p = ${player}; return { hasHls: typeof Hls, supported: window.Hls && Hls.isSupported(),
          player: !!p, ready: p && p.video.readyState, t: p && p.video.currentTime, err: p && p.video.error && p.video.error.message,
          levels: p && p.hls.levels.length, html: document.querySelector(".playerctl") && document.querySelector(".playerctl").textContent }; })()`);
      throw new Error("player did not start: " + JSON.stringify(state) + " log: " + log.slice(-15).join(" | "));
    }
    seen.audio = await page.evaluate(`${player}.hls.audioTracks.map(t => [t.name, t.lang])`);
    seen.subtitles = await page.evaluate(`${player}.hls.subtitleTracks.map(t => [t.name, t.lang])`);
    seen.audioBefore = await page.evaluate(`${player}.hls.audioTrack`);
    // Switch the audio to the original (last) and the subtitles to the first language, as the operator does.
    const last = String(seen.audio.length - 1);
    await page.selectOption(`select[title="audio language"]`, last);
    await page.waitForFunction(`${player}.hls.audioTrack === ${last}`, null, { timeout: 10000 });
    const t0 = await page.evaluate(`${player}.video.currentTime`);
    await page.selectOption(`select[title="subtitles"]`, "0");
    await page.waitForFunction(`${player}.hls.subtitleTrack === 0`, null, { timeout: 10000 });
    await page.waitForFunction(`(() => { const p = ${player}; const tt = Array.from(p.video.textTracks)
        .find(t => t.mode === "showing"); return tt && tt.cues && tt.cues.length > 0; })()`, null, { timeout: 15000 });
    seen.audioAfter = await page.evaluate(`${player}.hls.audioTrack`);
    seen.cues = await page.evaluate(`(() => { const tt = Array.from(${player}.video.textTracks).find(t => t.mode === "showing");
        return { language: tt.language, texts: Array.from(tt.cues).map(c => c.text) }; })()`);
    await page.waitForTimeout(1500);
    seen.advanced = (await page.evaluate(`${player}.video.currentTime`)) - t0;
    seen.paused = await page.evaluate(`${player}.video.paused`);
    await page.screenshot({ path: shot });
  } finally {
    await browser.close();
  }
  console.log(JSON.stringify(seen));
}

main().catch((e) => { console.error(String(e && e.stack || e)); process.exit(1); });
