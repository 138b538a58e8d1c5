// Drives Debian's chromium (playwright-core from .node/, no browser download) through the
// dashboard's HLS player while the stream is live: waits for playback, switches the audio to each
// other language through the page's selector (checking hls.js switched, fetched that rendition,
// and kept decoding audio and advancing), then the subtitles to each language given (collecting
// the cues the browser holds for that track).
// Usage: node dashboard_hls.cjs <dashboard url> <token> <stream id> <screenshot path> <sub lang>...
// Prints one JSON line with what it saw; exits non-zero (with the page's state) on a failure.
"use strict";
const path = require("path");
const { chromium } = require(path.join(process.env.LIVEDUB_NODE_MODULES, "playwright-core"));

const [url, token, sid, shot, ...subLangs] = process.argv.slice(2);
const FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--autoplay-policy=no-user-gesture-required"];
const P = `window.livedubPlayers[${JSON.stringify(sid)}]`;

async function main() {
  const browser = await chromium.launch({ executablePath: process.env.LIVEDUB_CHROMIUM || "/usr/bin/chromium",
                                          headless: true, args: FLAGS });
  const seen = { errors: [], audioSwitches: [], subtitles: {} };
  const log = [];
  const requested = [];  // HLS paths fetched, in order
  let page;
  const state = async () => page.evaluate(`(() => { const p = window.livedubPlayers && ${P};
      return { hls: typeof Hls, player: !!p, ready: p && p.video.readyState, t: p && p.video.currentTime,
               paused: p && p.video.paused, err: p && p.video.error && p.video.error.message, errors: p && p.errors,
               audioTrack: p && p.hls.audioTrack, switched: p && p.switched,
               buffered: p && Array.from({length: p.video.buffered.length}, (_, i) => [p.video.buffered.start(i), p.video.buffered.end(i)]),
               text: document.body.innerText.slice(0, 600) }; })()`).catch((e) => String(e));
  const wait = async (what, expr, timeout) => {
    try {
      await page.waitForFunction(expr, null, { timeout, polling: 100 });
    } catch (e) {
      throw new Error(`${what}: ${JSON.stringify(await state())} fetched: ${requested.slice(-16).join(", ")} log: ${log.slice(-8).join(" | ")}`);
    }
  };
  try {
    page = await browser.newPage();
    page.on("pageerror", (e) => seen.errors.push(String(e)));
    page.on("console", (m) => log.push(m.type() + ": " + m.text()));
    page.on("requestfailed", (r) => log.push("failed: " + r.url() + " " + (r.failure() || {}).errorText));
    page.on("response", (r) => { const m = r.url().match(/\/hls\/(.+)$/); if (m) requested.push(m[1] + " " + r.status()); });
    await page.goto(url);
    await page.fill("#token", token);
    await page.dispatchEvent("#token", "change");
    await wait("the player did not start", `window.livedubPlayers && ${P} && ${P}.video.currentTime > 1`, 30000);
    seen.audio = await page.evaluate(`${P}.hls.audioTracks.map(t => [t.name, t.lang])`);
    seen.audioOptions = await page.evaluate(`Array.from(${P}.audioSel.options).map(o => o.text)`);
    seen.subtitleTracks = await page.evaluate(`${P}.hls.subtitleTracks.map(t => [t.name, t.lang])`);
    seen.subtitleOptions = await page.evaluate(`Array.from(${P}.subSel.options).map(o => o.text)`);
    seen.audioFirst = await page.evaluate(`${P}.hls.audioTrack`);
    // Every other audio language, as the operator picks it in the selector.
    for (let i = 0; i < seen.audio.length; i++) {
      if (i === seen.audioFirst) continue;
      const before = await page.evaluate(`[${P}.video.currentTime, ${P}.video.webkitAudioDecodedByteCount]`);
      const mark = requested.length;
      await page.selectOption(`select[title="audio language"]`, String(i));
      await wait(`audio did not switch to ${i}`, `${P}.hls.audioTrack === ${i} && ${P}.switched.includes(${i})`, 10000);
      // Still playing on the new rendition: 1.5 s more of picture and audio decoded after the switch.
      await wait(`playback stopped after the switch to ${i}`, `${P}.video.currentTime > ${before[0]} + 1.5 &&
                 ${P}.video.webkitAudioDecodedByteCount > ${before[1]} && !${P}.video.paused`, 15000);
      seen.audioSwitches.push({ id: i, track: await page.evaluate(`${P}.hls.audioTrack`),
                                fetched: requested.slice(mark).filter((r) => /^audio-/.test(r)) });
    }
    // Subtitles: each language given, its cues as the browser's text track holds them.
    for (const lang of subLangs) {
      const i = seen.subtitleTracks.findIndex((t) => t[1] === lang);
      if (i < 0) throw new Error(`no subtitle track ${lang}: ${JSON.stringify(seen.subtitleTracks)}`);
      await page.selectOption(`select[title="subtitles"]`, String(i));
      const showing = `Array.from(${P}.video.textTracks).find(t => t.mode === "showing" && t.language === ${JSON.stringify(lang)})`;
      await wait(`subtitles did not switch to ${lang}`, `${P}.hls.subtitleTrack === ${i} && ${showing} &&
                 ${showing}.cues && ${showing}.cues.length > 0`, 20000);
      seen.subtitles[lang] = await page.evaluate(`(() => { const tt = ${showing};
          return { track: ${P}.hls.subtitleTrack, showing: Array.from(${P}.video.textTracks).filter(t => t.mode === "showing").length,
                   cues: Array.from(tt.cues).map(c => [c.startTime, c.endTime, c.text]) }; })()`);
    }
    const t0 = await page.evaluate(`${P}.video.currentTime`);
    await page.waitForTimeout(1500);
    seen.advancedAtEnd = (await page.evaluate(`${P}.video.currentTime`)) - t0;
    seen.paused = await page.evaluate(`${P}.video.paused`);
    seen.hlsErrors = await page.evaluate(`${P}.errors`);
    seen.requested = requested.length;
    seen.previewHidden = await page.evaluate(`document.querySelector("img.preview").hidden`);
    await page.screenshot({ path: shot });
  } finally {
    await browser.close();
  }
  console.log(JSON.stringify(seen));
}

main().catch((e) => { console.error(String(e && e.stack || e)); process.exit(1); });
