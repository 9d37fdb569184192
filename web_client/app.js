// realtime-sda page: signaling over /ws, one RTCPeerConnection, live figures from getStats().
"use strict";

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const MESSAGES = {
  server_full: "The server is full: every session is in use. Try again in a minute.",
  bad_token: "Wrong access token: open the link the server printed (it ends in ?token=...).",
  no_token: "This server needs an access token and this page's address has none. Open the link that " +
    "'realtime-sda serve' printed (it ends in ?token=...), or ask whoever runs the server for it.",
  busy: null, // the server's own words (photos waiting)
  no_face: "No face found in the photo. Choose a photo with one face, seen from the front.",
  bad_image: null, // the server's own words (size or format)
  no_avatar: "Choose a photo first: this server has no default avatar.",
  no_broadcast: "No broadcast is running on this server; use your microphone instead.",
  connection_lost: "The connection was lost. Press Start to connect again.",
};

// Browsers give the microphone only to secure pages: https, or http on this machine (localhost).
const INSECURE = "This page is not a secure context (plain http from another machine), so the browser " +
  "gives it no microphone. Open it over https (start the server with --tls-cert and --tls-key, see README) " +
  "or as http://localhost on the server's machine. Watching a broadcast works as it is.";
const sda = { ws: null, pc: null, mic: null, ready: null, serverLatencyMs: null, last: null, figures: {},
  photo: { shown: null, pending: null } };
window.sda = sda; // for tests and curious users

function say(text, isError = false) {
  const el = $("message");
  el.textContent = text;
  el.className = isError ? "error" : "";
}

function wsUrl() {
  const proto = location.protocol === "https:" ? "wss:" : "ws:";
  const token = params.get("token");
  return `${proto}//${location.host}/ws` + (token ? `?token=${encodeURIComponent(token)}` : "");
}

function connectSignaling() {
  return new Promise((resolve) => {
    const ws = new WebSocket(wsUrl());
    sda.ws = ws;
    let opened = false;
    ws.onopen = () => {
      opened = true;
      $("state").textContent = "signaling connected";
      // without ?token= say so at once: a server that needs one answers "no_token" now
      if (!params.get("token")) ws.send(JSON.stringify({ type: "hello" }));
    };
    ws.onmessage = (ev) => {
      let msg;
      try { msg = JSON.parse(ev.data); } catch { return; }
      onServerMessage(msg);
      if (msg.type === "ready") resolve(true);
      if (msg.type === "error" && !sda.ready) resolve(false);
    };
    ws.onclose = (ev) => {
      if (window.sdaClusterResume && window.sdaClusterResume(ws, ev, opened)) return; // cluster block below
      $("state").textContent = "not connected";
      $("start").disabled = true;
      $("stop").disabled = true;
      if (!opened) say("Cannot reach the server. Is it running? Reload the page to try again.", true);
      else if (ev.code === 1009) say("That was too large for the server (message size limit).", true);
      else if (ev.code !== 1000 && ev.code !== 1008 && ev.code !== 1013) say("Connection to the server lost. Reload the page to reconnect.", true);
      stopMedia();
      sda.ws = null;
      resolve(false);
    };
  });
}

function onServerMessage(msg) {
  switch (msg.type) {
    case "ready":
      sda.ready = msg;
      $("start").disabled = false;
      $("mode-watch").disabled = !msg.broadcast;
      if (!msg.has_avatar) $("photo-hint").textContent = "Choose a photo with one face, seen from the front (required on this server).";
      if (!window.isSecureContext) say(INSECURE, true);
      else say("Ready. Press Start and allow the microphone.");
      break;
    case "avatar":
      settlePhoto(true);
      say(`Photo accepted (${msg.width}x${msg.height}). Press Start.`);
      break;
    case "answer":
      sda.pc.setRemoteDescription({ type: "answer", sdp: msg.sdp }).catch((e) => say(`Could not use the server's answer: ${e.message}`, true));
      break;
    case "stats":
      sda.serverLatencyMs = msg.latency_ms;
      break;
    case "stopped":
      break;
    case "error": {
      const text = MESSAGES[msg.code] || msg.message || "The server reported an error.";
      say(text, true);
      if (msg.code === "bad_image" || msg.code === "no_face" || msg.code === "busy") settlePhoto(false);
      if (msg.code === "connection_lost" || msg.code === "no_avatar" || msg.code === "no_broadcast" || msg.code === "bad_sdp") stopMedia();
      break;
    }
  }
}

async function start() {
  if (!sda.ws || sda.ws.readyState !== WebSocket.OPEN) {
    if (!(await connectSignaling())) return;
  }
  stopMedia();
  const mode = document.querySelector("input[name=mode]:checked").value;
  const pc = new RTCPeerConnection({ iceServers: [] });
  sda.pc = pc;
  pc.ontrack = (ev) => {
    const video = $("avatar");
    if (ev.streams[0] && video.srcObject !== ev.streams[0]) video.srcObject = ev.streams[0];
  };
  pc.onconnectionstatechange = () => {
    $("state").textContent = pc.connectionState;
    if (pc.connectionState === "connected") say(mode === "mic" ? "Live: speak, and the face follows your voice." : "Live: watching the broadcast.");
    if (pc.connectionState === "failed") say(MESSAGES.connection_lost, true);
  };
  if (mode === "mic") {
    if (!window.isSecureContext || !navigator.mediaDevices) {
      say(INSECURE, true);
      stopMedia();
      return;
    }
    try {
      sda.mic = await navigator.mediaDevices.getUserMedia({ audio: { echoCancellation: true, noiseSuppression: true }, video: false });
    } catch (e) {
      const denied = e && (e.name === "NotAllowedError" || e.name === "SecurityError");
      say(denied ? "Microphone access was refused. Allow the microphone for this page (the icon in the address bar) and press Start again."
                 : `No microphone could be opened (${e.name || e}). Plug one in and press Start again.`, true);
      stopMedia();
      return;
    }
    for (const track of sda.mic.getAudioTracks()) pc.addTrack(track, sda.mic);
  } else {
    pc.addTransceiver("audio", { direction: "recvonly" });
  }
  pc.addTransceiver("video", { direction: "recvonly" });
  await pc.setLocalDescription(await pc.createOffer());
  await waitIceGathering(pc);
  sda.ws.send(JSON.stringify({ type: "offer", sdp: pc.localDescription.sdp, mode }));
  $("start").disabled = true;
  $("stop").disabled = false;
  say(mode === "mic" ? "Connecting... then speak: the face follows your voice." : "Connecting to the broadcast...");
}

function waitIceGathering(pc) {
  // aiortc takes one complete offer (no trickle ICE): wait for all candidates, at most 3 s.
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => { if (pc.iceGatheringState === "complete") resolve(); };
    pc.addEventListener("icegatheringstatechange", done);
    setTimeout(resolve, 3000);
  });
}

function stopMedia() {
  if (sda.pc) { sda.pc.close(); sda.pc = null; }
  if (sda.mic) { sda.mic.getTracks().forEach((t) => t.stop()); sda.mic = null; }
  $("avatar").srcObject = null;
  resetFigures();
  if (sda.ws && sda.ws.readyState === WebSocket.OPEN) $("start").disabled = false;
  $("stop").disabled = true;
}

function resetFigures() {
  // the old session's figures and state go: nothing shown belongs to a closed connection
  sda.last = null;
  sda.figures = {};
  sda.serverLatencyMs = null;
  for (const id of ["fps", "latency", "avoffset", "frames"]) $(id).textContent = "–";
  $("state").textContent = sda.ws && sda.ws.readyState === WebSocket.OPEN ? "signaling connected" : "not connected";
}

function stop() {
  if (sda.ws && sda.ws.readyState === WebSocket.OPEN) sda.ws.send(JSON.stringify({ type: "stop" }));
  stopMedia();
  say("Stopped.");
}

async function uploadPhoto(file) {
  if (!file) return;
  if (file.size > 6 * 1024 * 1024) { say("That photo is over 6 MB: choose a smaller one.", true); return; }
  if (sda.photo.pending) URL.revokeObjectURL(sda.photo.pending);
  sda.photo.pending = URL.createObjectURL(file);
  $("preview").src = sda.photo.pending;
  $("preview").hidden = false;
  if (!sda.ws || sda.ws.readyState !== WebSocket.OPEN) {
    if (!(await connectSignaling())) return;
  }
  say("Finding the face in the photo...");
  sda.ws.send(await file.arrayBuffer());
}

function settlePhoto(accepted) {
  // the thumbnail shows the photo the server uses: a refused one gives way to the previous
  const { shown, pending } = sda.photo;
  if (!pending) return;
  if (accepted) {
    if (shown) URL.revokeObjectURL(shown);
    sda.photo.shown = pending;
  } else {
    URL.revokeObjectURL(pending);
    if (shown) $("preview").src = shown;
    else { $("preview").removeAttribute("src"); $("preview").hidden = true; }
  }
  sda.photo.pending = null;
}

// ---- live figures --------------------------------------------------------------------------
function perTrack(stats) {
  const out = {};
  stats.forEach((s) => {
    if (s.type === "inbound-rtp") out[s.kind] = s;
    if (s.type === "candidate-pair" && s.nominated && s.state === "succeeded") out.pair = s;
  });
  return out;
}

function delta(now, prev, key) {
  return prev && now && now[key] !== undefined && prev[key] !== undefined ? now[key] - prev[key] : NaN;
}

async function updateFigures() {
  const pc = sda.pc;
  if (!pc) return;
  const now = perTrack(await pc.getStats());
  if (sda.pc !== pc) return; // stopped meanwhile: its figures were reset
  const prev = sda.last;
  sda.last = { ...now, t: performance.now() };
  if (!prev || !now.video) return;
  const dt = (sda.last.t - prev.t) / 1000;
  const frames = delta(now.video, prev.video, "framesDecoded");
  const fps = frames / dt;
  // playout delay of each kind over the last interval: jitter buffer (+ decode for video)
  const vBuf = delta(now.video, prev.video, "jitterBufferDelay") / delta(now.video, prev.video, "jitterBufferEmittedCount");
  const vDec = delta(now.video, prev.video, "totalDecodeTime") / frames;
  const aBuf = now.audio ? delta(now.audio, prev.audio, "jitterBufferDelay") / delta(now.audio, prev.audio, "jitterBufferEmittedCount") : NaN;
  const rtt = now.pair && now.pair.currentRoundTripTime !== undefined ? now.pair.currentRoundTripTime : 0;
  const videoDelayMs = 1000 * ((isFinite(vBuf) ? vBuf : 0) + (isFinite(vDec) ? vDec : 0));
  // A/V offset: what each track is playing now, in the sender's clock (estimatedPlayoutTimestamp,
  // from the RTCP sender reports): positive when the picture lags the sound. Our server stamps a
  // frame and its own audio from one master clock, so 0 is perfect lip sync. Fallback: the
  // difference of the two playout delays.
  const ePlayV = now.video.estimatedPlayoutTimestamp, ePlayA = now.audio && now.audio.estimatedPlayoutTimestamp;
  const avMs = ePlayV && ePlayA ? ePlayA - ePlayV : (isFinite(aBuf) ? videoDelayMs - 1000 * aBuf : NaN);
  // end to end: the model's look-ahead (a frame needs audio until then), the server (window
  // complete -> frame sent), the network both ways, and this browser's video playout delay
  const look = sda.ready && isFinite(sda.ready.lookahead_ms) ? sda.ready.lookahead_ms : 0;
  const e2eMs = sda.serverLatencyMs !== null && sda.serverLatencyMs !== undefined
    ? look + sda.serverLatencyMs + 1000 * rtt + videoDelayMs : NaN;
  sda.figures = { fps, framesDecoded: now.video.framesDecoded, avOffsetMs: avMs, latencyMs: e2eMs,
    lookaheadMs: look, serverMs: sda.serverLatencyMs, rttMs: 1000 * rtt, videoPlayoutMs: videoDelayMs,
    audioPlayoutMs: 1000 * aBuf };
  $("fps").textContent = isFinite(fps) ? `${fps.toFixed(1)} fps` : "–";
  $("latency").textContent = isFinite(e2eMs) ? `${e2eMs.toFixed(0)} ms (look-ahead ${look.toFixed(0)} + server ${sda.serverLatencyMs} + network ${(1000 * rtt).toFixed(0)} + playout ${videoDelayMs.toFixed(0)} ms)` : "–";
  $("avoffset").textContent = isFinite(avMs) ? `${avMs >= 0 ? "+" : ""}${avMs.toFixed(0)} ms` : "–";
  $("frames").textContent = `${now.video.framesDecoded || 0} decoded, ${now.video.framesDropped || 0} dropped`;
}

$("start").addEventListener("click", () => start().catch((e) => say(`Could not start: ${e.message || e}`, true)));
$("stop").addEventListener("click", stop);
$("photo").addEventListener("change", (ev) => uploadPhoto(ev.target.files[0]).catch((e) => say(`Could not send the photo: ${e.message || e}`, true)));
setInterval(() => updateFigures().catch(() => {}), 1000);
if (!window.isSecureContext) say(INSECURE, true);
connectSignaling();

// ---- Say and Interrupt: text for the broadcast avatar (POST /say?text=..., POST /interrupt).
// Self-contained: the server answers JSON {ok, ...} or {error, message}.
(() => {
  const box = document.getElementById("say-text");
  const status = document.getElementById("say-status");
  if (!box || !status) return;
  const token = new URLSearchParams(location.search).get("token");
  async function post(path, params) {
    if (token) params.set("token", token);
    const query = params.toString();
    const res = await fetch(path + (query ? `?${query}` : ""), { method: "POST", cache: "no-store" });
    let body = {};
    try { body = await res.json(); } catch (e) { /* not JSON: the status says enough */ }
    if (!res.ok) throw new Error(body.message || `the server answered ${res.status}`);
    return body;
  }
  // only a broadcast speaks text: say so (the page learns it from the server's "ready")
  const buttons = [document.getElementById("say-send"), document.getElementById("say-interrupt")];
  const follow = setInterval(() => {
    const ready = window.sda && window.sda.ready;
    if (!ready) return;
    clearInterval(follow);
    if (!ready.broadcast) {
      for (const b of buttons.concat([box])) b.disabled = true;
      status.textContent = "This server runs no broadcast: start it with 'realtime-sda serve --broadcast' to type text for the avatar.";
    }
  }, 200);
  box.addEventListener("keydown", (ev) => {
    if (ev.key === "Enter" && (ev.ctrlKey || ev.metaKey)) document.getElementById("say-send").click();
  });
  document.getElementById("say-send").addEventListener("click", async () => {
    const text = box.value.trim();
    if (!text) { status.textContent = "Type something to say first."; return; }
    try {
      const r = await post("/say", new URLSearchParams({ text }));
      status.textContent = `Saying it (${r.sentences} sentence${r.sentences === 1 ? "" : "s"}).`;
    } catch (e) { status.textContent = `Could not say it: ${e.message}`; }
  });
  document.getElementById("say-interrupt").addEventListener("click", async () => {
    try {
      const r = await post("/interrupt", new URLSearchParams());
      status.textContent = `Interrupted (${r.dropped_s} s of speech dropped).`;
    } catch (e) { status.textContent = `Could not interrupt: ${e.message}`; }
  });
})();

// ---- cluster mode (serve --cluster): a lost worker, a lost front door ------------------------
// The front door tells the page its session ("session": id, worker). When that worker is lost
// ("worker_lost") the front door has already placed the page on another worker, whose "ready"
// follows: the page starts its media again there on its own (the same photo, if one was sent).
// When the signaling socket drops while the media plays (a front door died) the media goes on:
// the page reconnects to any front door with ?resume=ID and keeps its session.
(() => {
  const cluster = { session: null, worker: null, rejoin: false, resuming: 0, lost: 0, resumed: 0 };
  sda.cluster = cluster;
  const handleMessage = onServerMessage;
  const plainUrl = wsUrl;
  wsUrl = () => { // eslint-disable-line no-func-assign
    const url = plainUrl();
    if (!cluster.resuming || !cluster.session) return url;
    return url + (url.includes("?") ? "&" : "?") + `resume=${encodeURIComponent(cluster.session)}`;
  };
  async function rejoin() {
    const file = $("photo").files && $("photo").files[0];
    if (file && sda.ws) sda.ws.send(await file.arrayBuffer());
    await start();
  }
  onServerMessage = (msg) => { // eslint-disable-line no-func-assign
    if (msg.type === "session") {
      const wasResuming = cluster.resuming > 0;
      cluster.resuming = 0;
      if (wasResuming && msg.resumed) { cluster.resumed += 1; $("state").textContent = "connected"; return; }
      if (wasResuming) { cluster.rejoin = true; stopMedia(); } // the session was gone: start anew
      cluster.session = msg.id;
      cluster.worker = msg.worker;
      return;
    }
    if (msg.type === "error" && msg.code === "worker_lost") {
      cluster.lost += 1;
      cluster.rejoin = Boolean(sda.pc);
      stopMedia();
      say("The avatar's server was lost: reconnecting to another one...", true);
      return;
    }
    handleMessage(msg);
    if (msg.type === "ready" && cluster.rejoin) {
      cluster.rejoin = false;
      rejoin().catch((e) => say(`Could not reconnect: ${e.message || e}`, true));
    }
  };
  // the signaling socket closed: while media plays in a cluster session, resume it (5 tries)
  window.sdaClusterResume = (ws, ev, opened) => {
    if (!cluster.session || !sda.pc || ev.code === 1000 || ev.code === 1008 || ev.code === 1013) return false;
    if (cluster.resuming >= 5) { cluster.resuming = 0; return false; }
    cluster.resuming += 1;
    if (sda.ws === ws) sda.ws = null;
    $("state").textContent = "reconnecting signaling";
    setTimeout(() => connectSignaling(), opened ? 200 : 500 * cluster.resuming);
    return true;
  };
})();
