"""The operator dashboard: one HTML page (inline CSS/JS; its one optional asset is hls.js, below).

It holds no data: it polls `GET /v1/streams` every 2 s, shows each stream's state and counters, its
recent transcripts/translations, a live preview (`/v1/streams/{id}/preview.mjpg`) with the live
captions under it (the SSE feed `/v1/streams/{id}/captions/{lang}/events`, any of the stream's
languages; each cue shown while the feed's output clock is inside it), and switches the mix with
`PATCH /v1/streams/{id}`. The token typed into the page is kept in memory only (never
in localStorage: any script of the origin could read it there, and it would outlive the tab) and
sent as `Authorization: Bearer` only. The preview image and the caption `EventSource` cannot send
headers, so the page asks `POST /v1/streams/{id}/preview-link` and
`POST /v1/streams/{id}/captions/{lang}/link` for signed links that open that one preview or feed
for minutes (and for new ones after an error, and when a feed ends with its link: `expired`).

A stream with an `hls` output also gets a player (a `<video>` fed by hls.js, which the service
serves at `/assets/hls.min.js` when `--hls-js` is set; without it the page shows no player and
needs nothing else) with an audio-language and a subtitle selector: the preview is pictures
only, so this is where the operator listens to each language. hls.js sends the token as
`Authorization: Bearer` (`xhrSetup`; the read-only viewer token is enough). After a fatal player
error (no playlist yet, a lost connection) the player is made again on a poll 3 s later.
`window.livedubPlayers[id]` exposes `{hls, video, audioSel, subSel, errors, switched}` to tests.
"""

DASHBOARD_HTML = r"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>livedub dashboard</title>
<style>
  :root { color-scheme: light dark; --bg:#f5f6f8; --card:#fff; --muted:#667; --ok:#1a7f37; --bad:#c0392b; --warn:#b7791f; }
  @media (prefers-color-scheme: dark) { :root { --bg:#16181c; --card:#212429; --muted:#99a; } }
  body { margin:0; font:14px/1.4 system-ui, sans-serif; background:var(--bg); }
  header { display:flex; gap:1em; align-items:center; padding:.6em 1em; background:var(--card);
           border-bottom:1px solid #8883; position:sticky; top:0; }
  header h1 { font-size:1.1em; margin:0; flex:1; }
  #status { color:var(--muted); }
  #streams { display:grid; grid-template-columns:repeat(auto-fill, minmax(520px, 1fr)); gap:1em; padding:1em; }
  .card { background:var(--card); border-radius:8px; padding:.8em 1em; box-shadow:0 1px 3px #0002; }
  .card h2 { font-size:1.05em; margin:0 0 .4em; display:flex; gap:.6em; align-items:baseline; }
  .state { font-size:.8em; padding:.1em .5em; border-radius:1em; background:#8883; }
  .state.running { background:var(--ok); color:#fff; } .state.error, .state.ended { background:var(--bad); color:#fff; }
  .row { display:flex; gap:1em; }
  .preview { width:240px; min-height:135px; background:#000; border-radius:4px; cursor:pointer; object-fit:contain; }
  .pcol { width:240px; flex:none; }
  .captions { background:#000; color:#fff; font-size:.85em; line-height:1.3; min-height:2.6em; padding:.2em .4em;
              margin-top:2px; border-radius:4px; text-align:center; white-space:pre-line; }
  .captions.stale { color:#aaa; } .caplang { font-size:.8em; color:var(--muted); margin-top:2px; }
  table.kv { border-collapse:collapse; font-size:.9em; flex:1; }
  table.kv td { padding:1px 6px 1px 0; vertical-align:top; } table.kv td:first-child { color:var(--muted); white-space:nowrap; }
  .mix button { margin-right:.3em; } .mix button.on { font-weight:bold; outline:2px solid var(--ok); }
  .recent { font-size:.85em; max-height:11em; overflow:auto; margin:.5em 0 0; padding:0; list-style:none; }
  .recent li { border-top:1px solid #8882; padding:.2em 0; } .recent .tr { color:var(--muted); }
  .err { color:var(--bad); } .empty { color:var(--muted); padding:2em; }
  .player { width:100%; max-height:270px; background:#000; border-radius:4px; margin-top:.5em; }
  .playerctl { font-size:.85em; color:var(--muted); }
</style>
</head>
<body>
<header>
  <h1>livedub</h1>
  <span id="status">loading...</span>
  <label>API token <input id="token" type="password" size="18" placeholder="MEDIA_API_TOKEN" autocomplete="off"></label>
</header>
<script src="/assets/hls.min.js" onerror="window.Hls = undefined"></script>
<main id="streams"><div class="empty">No streams yet. Publish to rtmp://&lt;server&gt;/live/&lt;name&gt;/in or POST /v1/streams.</div></main>
<script>
"use strict";
let apiToken = "";  // in memory only: typed again after a reload
const tokenInput = document.getElementById("token");
try { localStorage.removeItem("livedub.token"); } catch (e) {}  // what older versions stored
tokenInput.addEventListener("change", () => {
  apiToken = tokenInput.value.trim();
  for (const card of cards.values()) { card.setPreview(); card.setCaptions(); }
  poll();
});
const token = () => apiToken;
const headers = () => token() ? {"Authorization": "Bearer " + token()} : {};
const cards = new Map();
const main = document.getElementById("streams");
const statusEl = document.getElementById("status");

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  for (const c of children) e.append(c);
  return e;
}
const fmt = (v, unit) => v === null || v === undefined ? "-" : v + (unit || "");

async function api(method, path, body) {
  const opts = {method, headers: {...headers()}};
  if (body !== undefined) { opts.body = JSON.stringify(body); opts.headers["Content-Type"] = "application/json"; }
  const r = await fetch(path, opts);
  const data = await r.json().catch(() => ({}));
  if (!r.ok) throw new Error((data.error && data.error.message) || (r.status + " " + r.statusText));
  return data;
}

function makeCard(s) {
  const id = s.id, card = {id, lang: s.target_languages[0]};
  const title = el("span", {}, id), state = el("span", {class: "state"});
  const img = el("img", {class: "preview", alt: "preview of " + id, title: "click to reconnect the preview"});
  const kv = el("table", {class: "kv"});
  const rows = {};
  for (const [key, label] of [["state", "state"], ["sts", "STS"], ["mix", "mix"], ["frags", "fragments sent / ok"],
                              ["fallbacks", "fallbacks"], ["delay", "output delay"], ["av", "A/V offset"],
                              ["latency", "STS latency p50/p95"], ["langs", "languages"], ["preview", "preview"]]) {
    rows[key] = el("td");
    kv.append(el("tr", {}, el("td", {}, label), rows[key]));
  }
  const mix = el("div", {class: "mix"});
  const buttons = {};
  for (const m of ["duck", "replace", "passthrough"]) {
    buttons[m] = el("button", {type: "button"}, m);
    buttons[m].addEventListener("click", async () => {
      try { card.update(await api("PATCH", "/v1/streams/" + encodeURIComponent(id), {mix: m})); msg.textContent = ""; }
      catch (e) { msg.textContent = "mix change failed: " + e.message; }
    });
    mix.append(buttons[m]);
  }
  const langSel = el("select", {title: "preview language"});
  for (const l of s.target_languages) langSel.append(el("option", {value: l}, l));
  langSel.addEventListener("change", () => { card.lang = langSel.value; card.setPreview(); });
  if (s.target_languages.length > 1) mix.append(" preview: ", langSel);
  const msg = el("div", {class: "err"});
  const recent = el("ul", {class: "recent"});
  // Live captions under the preview: one SSE feed of the chosen language; each cue is shown while
  // the output clock (sent by the feed) is inside it, as the delayed output plays it.
  const capBox = el("div", {class: "captions", title: "live captions"});
  const capSel = el("select", {title: "caption language"});
  for (const l of [s.source_language, ...s.target_languages.filter(l => l !== s.source_language)])
    capSel.append(el("option", {value: l}, l + (l === s.source_language ? " (original)" : "")));
  card.capLang = s.target_languages[0];
  capSel.value = card.capLang;
  const capInfo = el("span", {});
  const pcol = el("div", {class: "pcol"}, img, capBox, el("div", {class: "caplang"}, "captions: ", capSel, " ", capInfo));
  let feed = null, cues = [], clockOffset = null, capRetry = null;
  card.closeCaptions = () => { if (feed) { feed.close(); feed = null; } clearTimeout(capRetry); };
  card.setCaptions = async () => {
    card.closeCaptions();
    cues = []; clockOffset = null; capBox.textContent = "";
    const lang = card.capLang;
    const retry = () => { clearTimeout(capRetry); capRetry = setTimeout(() => { if (cards.get(id) === card && card.capLang === lang) card.setCaptions(); }, 3000); };
    try {
      const r = await fetch("/v1/streams/" + encodeURIComponent(id) + "/captions/" + encodeURIComponent(lang) + "/link",
                            {method: "POST", headers: headers()});
      if (!r.ok) { capInfo.textContent = r.status + " " + (((await r.json().catch(() => ({}))).error || {}).message || ""); retry(); return; }
      if (card.capLang !== lang) return;
      const es = new EventSource((await r.json()).events);
      feed = es;
      capInfo.textContent = "";
      es.addEventListener("cue", (ev) => {
        const c = JSON.parse(ev.data);
        cues.push(c); cues.sort((a, b) => a.start_ms - b.start_ms);
        if (cues.length > 50) cues.splice(0, cues.length - 50);
        card.showCaption();
      });
      es.addEventListener("clock", (ev) => {  // only a playing output's clock moves
        const c = JSON.parse(ev.data);
        clockOffset = c.playing ? c.clock_ms - performance.now() : null;
      });
      es.addEventListener("end", () => { es.close(); if (feed === es) feed = null; });
      // The feed ends with its signed link (5 min): a new link, and the kept cues again.
      es.addEventListener("expired", () => { es.close(); if (feed === es && cards.get(id) === card) card.setCaptions(); });
      es.addEventListener("error", () => { if (es.readyState === EventSource.CLOSED && feed === es) { feed = null; retry(); } });
    } catch (e) { capInfo.textContent = String(e); retry(); }
  };
  card.showCaption = () => {
    let cue = null, stale = false;
    if (clockOffset !== null) {
      const now = performance.now() + clockOffset;
      cue = cues.find(c => c.start_ms <= now && now < c.end_ms) || null;
    } else if (cues.length) { cue = cues[cues.length - 1]; stale = true; }  // not playing: the latest, greyed
    const text = cue ? cue.lines.join("\n") : "";
    if (capBox.textContent !== text) capBox.textContent = text;
    capBox.className = "captions" + (stale ? " stale" : "");
  };
  capSel.addEventListener("change", () => { card.capLang = capSel.value; card.setCaptions(); });
  // The HLS player (streams with an hls output, when hls.js is served): every audio language
  // and subtitle track of the one presentation, switched in place.
  const playerBox = el("div", {});
  card.hls = null;
  let playerRetryAt = 0;
  card.setPlayer = (s) => {
    if (card.hls || !s.hls || !window.Hls || !Hls.isSupported() || !token() || Date.now() < playerRetryAt) return;
    const video = el("video", {class: "player", controls: "", autoplay: "", playsinline: ""});
    video.muted = true;  // browsers start muted media without a click; unmute with the controls
    const audioSel = el("select", {title: "audio language"}), subSel = el("select", {title: "subtitles"});
    const hls = new Hls({xhrSetup: (xhr) => { if (token()) xhr.setRequestHeader("Authorization", "Bearer " + token()); },
                         renderTextTracksNatively: true});
    const player = {hls, video, audioSel, subSel, errors: [], switched: []};
    card.hls = hls;
    hls.on(Hls.Events.AUDIO_TRACKS_UPDATED, (_, d) => {
      audioSel.replaceChildren(...d.audioTracks.map((t, i) => el("option", {value: String(i)}, t.name)));
      audioSel.value = String(hls.audioTrack);
    });
    hls.on(Hls.Events.AUDIO_TRACK_SWITCHED, (_, d) => { audioSel.value = String(d.id); player.switched.push(d.id); });
    hls.on(Hls.Events.SUBTITLE_TRACKS_UPDATED, (_, d) => {
      subSel.replaceChildren(el("option", {value: "-1"}, "off"), ...d.subtitleTracks.map((t, i) => el("option", {value: String(i)}, t.name)));
      subSel.value = String(hls.subtitleTrack);
    });
    hls.on(Hls.Events.ERROR, (_, d) => {
      player.errors.push(d.details + (d.fatal ? " (fatal)" : ""));
      if (!d.fatal) return;
      // A stream whose output has not written its playlists yet, a lost connection, a token
      // typed wrong: start over on a later poll rather than leave a dead player.
      card.closePlayer();
      playerRetryAt = Date.now() + 3000;
      playerBox.replaceChildren(el("div", {class: "playerctl err"}, "player: " + d.details + " (retrying)"));
    });
    audioSel.addEventListener("change", () => { hls.audioTrack = Number(audioSel.value); });
    subSel.addEventListener("change", () => { hls.subtitleDisplay = true; hls.subtitleTrack = Number(subSel.value); });
    hls.loadSource(s.hls.master);
    hls.attachMedia(video);
    playerBox.replaceChildren(video, el("div", {class: "playerctl"}, "audio: ", audioSel, " subtitles: ", subSel));
    (window.livedubPlayers = window.livedubPlayers || {})[id] = player;
  };
  card.closePlayer = () => { if (card.hls) { card.hls.destroy(); card.hls = null; } playerBox.replaceChildren(); };
  const root = el("section", {class: "card"}, el("h2", {}, title, state), el("div", {class: "row"}, pcol, kv), mix, msg,
                  playerBox, recent);

  // The preview reads an RTMP output back: a language without one (an hls-only stream) has none,
  // and the player below is where that stream is watched.
  const previewable = (lang) => Object.keys(s.outputs || {}).some(k => k === lang || (k.startsWith("rtmp.") && k.endsWith("." + lang)));
  card.setPreview = async () => {
    img.hidden = !previewable(card.lang);
    if (img.hidden) { img.removeAttribute("src"); return; }
    try {
      const r = await fetch("/v1/streams/" + encodeURIComponent(id) + "/preview-link?" + new URLSearchParams({lang: card.lang}),
                            {method: "POST", headers: headers()});
      if (!r.ok) { img.alt = "preview: " + r.status + " " + ((await r.json()).error || {}).message; return; }
      img.src = (await r.json()).url;
    } catch (e) { img.alt = "preview: " + e; }
  };
  img.addEventListener("click", card.setPreview);
  img.addEventListener("error", () => setTimeout(() => { if (cards.get(id) === card && !img.hidden) card.setPreview(); }, 3000));
  card.update = (s) => {
    state.textContent = s.state; state.className = "state " + s.state;
    const c = s.counters || {};
    rows.state.textContent = s.state + (s.reason ? " (" + s.reason + ")" : "") + ", input " + s.input.state + ", output " + s.output.state;
    rows.sts.textContent = s.sts.state + (s.sts.last_error ? " - " + s.sts.last_error : "") + ", in flight " + s.sts.inflight;
    rows.mix.textContent = s.mix + (s.mix === "duck" ? " (" + s.duck_gain_db + " dB)" : "");
    rows.frags.textContent = fmt(c.fragments_sent) + " / " + fmt((c.fragments_processed || {}).ok || 0);
    const fb = Object.entries(c.fallbacks || {});
    rows.fallbacks.textContent = fb.length ? fb.map(([k, v]) => k + ": " + v).join(", ") : "none";
    rows.delay.textContent = fmt(s.output_delay_measured_s, " s") + " (target " + fmt(s.output_delay_s, " s") + ")";
    rows.av.textContent = fmt(s.av_offset_ms, " ms");
    rows.latency.textContent = fmt(s.latency_ms.p50 && Math.round(s.latency_ms.p50)) + " / " + fmt(s.latency_ms.p95 && Math.round(s.latency_ms.p95), " ms");
    rows.langs.textContent = s.source_language + " \u2192 " + s.target_languages.join(", ");
    const p = s.preview || {};
    rows.preview.textContent = fmt(p.subscribers) + " viewers, " + fmt(p.frames) + " frames" + (p.last_error ? " - " + p.last_error : "");
    for (const [m, b] of Object.entries(buttons)) b.className = s.mix === m ? "on" : "";
    card.setPlayer(s);
    recent.replaceChildren(...(s.recent || []).slice().reverse().map(r => el("li", {},
      el("div", {}, "[" + (r.start_ms / 1000).toFixed(1) + " s] " + r.transcript),
      ...r.dubs.map(d => el("div", {class: "tr"}, d.language + ": " + d.text)))));
  };
  card.root = root;
  card.setPreview();
  card.setCaptions();
  return card;
}

async function poll() {
  try {
    const data = await api("GET", "/v1/streams");
    const seen = new Set();
    for (const s of data.streams) {
      seen.add(s.id);
      let card = cards.get(s.id);
      if (!card) { card = makeCard(s); cards.set(s.id, card); main.append(card.root); }
      card.update(s);
    }
    for (const [id, card] of cards) {
      if (!seen.has(id)) {
        card.root.querySelector("img").removeAttribute("src"); card.closeCaptions(); card.closePlayer(); card.root.remove();
        cards.delete(id);
      }
    }
    const empty = main.querySelector(".empty");
    if (empty) empty.hidden = cards.size > 0;
    statusEl.textContent = data.streams.length + " stream(s), updated " + new Date().toLocaleTimeString();
    statusEl.className = "";
  } catch (e) {
    statusEl.textContent = "cannot list streams: " + e.message;
    statusEl.className = "err";
  }
}
poll();
setInterval(poll, 2000);
setInterval(() => { for (const card of cards.values()) card.showCaption(); }, 200);
</script>
</body>
</html>
"""
