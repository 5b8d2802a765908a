// Switchboard demo page. Talks to the Calls-compatible API the way the Calls
// browser examples do: fetch with a Bearer app secret and a JSON string body.
'use strict';

(async function () {
  // switchboard dev serves the app list (with secrets: local use only).
  // Without it the settings stay empty for the user to fill in.
  let cfg = { apiBase: '/v1', apps: [] };
  try {
    const res = await fetch('/demo/config.json', { cache: 'no-store' });
    if (res.ok) cfg = await res.json();
  } catch (e) {
    // Served by something else: fill the fields by hand.
  }
  const $ = (id) => document.getElementById(id);

  // Everything a test (or a curious person in the console) may want to read.
  const demo = {
    phase: 'idle',
    pushPC: null,
    pullPC: null,
    pushSessionId: '',
    pullSessionId: '',
    error: '',
    dcError: '',
    dcOpen: false,
    sent: [],
    received: [],
    send: (text) => sendMessage(text),
  };
  window.switchboardDemo = demo;

  // ---------- settings ----------

  const appSelect = $('app');
  cfg.apps.forEach((a, i) => {
    const o = document.createElement('option');
    o.value = String(i);
    o.textContent = a.name || a.id;
    appSelect.appendChild(o);
  });
  if (cfg.apps.length === 0) {
    const o = document.createElement('option');
    o.textContent = '(enter below)';
    appSelect.appendChild(o);
  }
  function pickApp() {
    const a = cfg.apps[Number(appSelect.value)];
    if (!a) return;
    $('appId').value = a.id;
    $('secret').value = a.secret;
  }
  appSelect.addEventListener('change', pickApp);
  $('apiBase').value = cfg.apiBase || '/v1';
  pickApp();

  function appBase() {
    const base = $('apiBase').value.trim().replace(/\/+$/, '');
    return `${base}/apps/${encodeURIComponent($('appId').value.trim())}`;
  }

  // ---------- API ----------

  class APIError extends Error {}

  // call sends one API request and returns the decoded JSON body. It throws
  // on a transport failure, a non-JSON body, a top-level errorCode, or a
  // per-item errorCode in tracks[] or dataChannels[].
  async function call(method, path, body) {
    const init = { method, headers: { Authorization: `Bearer ${$('secret').value}` } };
    if (body !== undefined) init.body = JSON.stringify(body);
    const res = await fetch(appBase() + path, init);
    const text = await res.text();
    let json;
    try {
      json = JSON.parse(text);
    } catch (e) {
      throw new APIError(`${method} ${path}: HTTP ${res.status}: ${text.slice(0, 160) || '(empty body)'}`);
    }
    if (json.errorCode) {
      throw new APIError(`${method} ${path}: HTTP ${res.status}: ${json.errorCode}: ${json.errorDescription || ''}`);
    }
    for (const item of [...(json.tracks || []), ...(json.dataChannels || [])]) {
      if (item.errorCode) {
        const name = item.trackName || item.dataChannelName || '';
        throw new APIError(`${method} ${path}: ${name}: ${item.errorCode}: ${item.errorDescription || ''}`);
      }
    }
    if (!res.ok) throw new APIError(`${method} ${path}: HTTP ${res.status}`);
    return json;
  }

  async function newSession() {
    const r = await call('POST', '/sessions/new');
    if (!r.sessionId) throw new APIError('sessions/new: no sessionId in the response');
    return r.sessionId;
  }

  // answerSFUOffer completes an SFU-initiated negotiation: the SFU offer goes
  // in, the browser's answer goes back through PUT renegotiate.
  async function answerSFUOffer(pc, sessionId, offer) {
    await pc.setRemoteDescription(offer);
    const answer = await pc.createAnswer();
    await pc.setLocalDescription(answer);
    await call('PUT', `/sessions/${sessionId}/renegotiate`, {
      sessionDescription: { type: 'answer', sdp: pc.localDescription.sdp },
    });
  }

  function waitConnected(pc, what, ms) {
    return new Promise((resolve, reject) => {
      const done = () => pc.iceConnectionState === 'connected' || pc.iceConnectionState === 'completed';
      if (done()) return resolve();
      const timer = setTimeout(() => reject(new Error(`${what}: ICE not connected after ${ms / 1000} s (state ${pc.iceConnectionState})`)), ms);
      pc.addEventListener('iceconnectionstatechange', () => {
        if (done()) { clearTimeout(timer); resolve(); }
        if (pc.iceConnectionState === 'failed') { clearTimeout(timer); reject(new Error(`${what}: ICE failed`)); }
      });
    });
  }

  function newPC() {
    // No STUN or TURN server: the SFU is ICE-lite and offers its own host
    // candidates, and a local demo must not send traffic anywhere else.
    return new RTCPeerConnection({ iceServers: [], bundlePolicy: 'max-bundle' });
  }

  // ---------- the demo ----------

  function setPhase(p) {
    demo.phase = p;
    $('phase').textContent = p;
    $('phase').className = `phase ${p}`;
    refresh();
  }

  function showError(el, msg) {
    el.textContent = msg;
    el.hidden = !msg;
  }

  async function start() {
    $('start').disabled = true;
    $('start').textContent = 'Running';
    showError($('error'), '');
    try {
      await run();
    } catch (e) {
      demo.error = String(e && e.message ? e.message : e);
      showError($('error'), demo.error);
      setPhase('failed');
      $('start').disabled = false;
      $('start').textContent = 'Retry';
    }
  }

  async function run() {
    // A retry starts over: the SFU lets go of the old sessions' tracks when
    // their PeerConnections close.
    for (const pc of [demo.pushPC, demo.pullPC]) if (pc) pc.close();
    Object.assign(demo, { pushPC: null, pullPC: null, pushSessionId: '', pullSessionId: '', error: '' });
    setPhase('camera');
    const stream = await navigator.mediaDevices.getUserMedia({
      audio: true,
      video: { width: { ideal: 640 }, height: { ideal: 480 } },
    });
    $('localVideo').srcObject = stream;

    // 1. Publish: a session, sendonly transceivers, our offer, the SFU's answer.
    setPhase('publishing');
    const pushPC = newPC();
    demo.pushPC = pushPC;
    demo.pushSessionId = await newSession();
    const names = { audio: 'microphone', video: 'camera' };
    const transceivers = stream.getTracks().map((track) => pushPC.addTransceiver(track, { direction: 'sendonly' }));
    await pushPC.setLocalDescription(await pushPC.createOffer());
    const pushed = await call('POST', `/sessions/${demo.pushSessionId}/tracks/new`, {
      sessionDescription: { type: 'offer', sdp: pushPC.localDescription.sdp },
      tracks: transceivers.map((t) => ({ location: 'local', mid: t.mid, trackName: names[t.sender.track.kind] })),
    });
    await pushPC.setRemoteDescription(pushed.sessionDescription);
    await waitConnected(pushPC, 'publisher', 10000);

    // 2. Pull: a second session asks for session 1's tracks; the SFU offers.
    setPhase('pulling');
    const pullPC = newPC();
    demo.pullPC = pullPC;
    demo.pullSessionId = await newSession();
    const remoteStream = new MediaStream();
    $('remoteVideo').srcObject = remoteStream;
    pullPC.addEventListener('track', (ev) => remoteStream.addTrack(ev.track));
    const pulled = await call('POST', `/sessions/${demo.pullSessionId}/tracks/new`, {
      tracks: transceivers.map((t) => ({
        location: 'remote',
        sessionId: demo.pushSessionId,
        trackName: names[t.sender.track.kind],
      })),
    });
    if (pulled.requiresImmediateRenegotiation) {
      await answerSFUOffer(pullPC, demo.pullSessionId, pulled.sessionDescription);
    }
    await waitConnected(pullPC, 'subscriber', 10000);
    setPhase('live');

    // 3. DataChannel echo. A failure here leaves the video running.
    try {
      await setupDataChannels();
    } catch (e) {
      demo.dcError = String(e && e.message ? e.message : e);
      showError($('dcError'), demo.dcError);
      $('dcState').textContent = 'unavailable';
      $('dcState').className = 'phase failed';
    }
  }

  // establish opens the SCTP transport of a session: the SFU re-offers with
  // an m=application section, which the browser answers.
  async function establish(pc, sessionId) {
    const r = await call('POST', `/sessions/${sessionId}/datachannels/establish`, {
      dataChannel: { location: 'remote', dataChannelName: 'server-events' },
    });
    if (r.requiresImmediateRenegotiation) await answerSFUOffer(pc, sessionId, r.sessionDescription);
  }

  let publisherChannel = null;

  async function setupDataChannels() {
    $('dcState').textContent = 'establishing';
    await establish(demo.pushPC, demo.pushSessionId);
    await establish(demo.pullPC, demo.pullSessionId);

    $('dcState').textContent = 'publishing';
    const pub = await call('POST', `/sessions/${demo.pushSessionId}/datachannels/new`, {
      dataChannels: [{ location: 'local', dataChannelName: 'chat' }],
    });
    publisherChannel = demo.pushPC.createDataChannel('chat', { negotiated: true, id: pub.dataChannels[0].id });

    $('dcState').textContent = 'subscribing';
    const sub = await call('POST', `/sessions/${demo.pullSessionId}/datachannels/new`, {
      dataChannels: [{ location: 'remote', sessionId: demo.pushSessionId, dataChannelName: 'chat' }],
    });
    const subscriberChannel = demo.pullPC.createDataChannel('chat-subscribed', { negotiated: true, id: sub.dataChannels[0].id });
    subscriberChannel.addEventListener('message', (ev) => {
      const text = typeof ev.data === 'string' ? ev.data : `(${ev.data.byteLength ?? ev.data.size} binary bytes)`;
      demo.received.push(text);
      logLine($('dcReceived'), text);
    });

    await Promise.all([opened(publisherChannel, 'publisher channel'), opened(subscriberChannel, 'subscriber channel')]);
    demo.dcOpen = true;
    $('dcState').textContent = 'open';
    $('dcState').className = 'phase live';
    $('dcText').disabled = false;
    $('dcSend').disabled = false;

    // A heartbeat so a person sees the echo without typing.
    let n = 0;
    setInterval(() => sendMessage(`hello from session 1 · #${++n}`), 2000);
  }

  function opened(ch, what) {
    return new Promise((resolve, reject) => {
      if (ch.readyState === 'open') return resolve();
      const timer = setTimeout(() => reject(new Error(`${what} not open after 10 s (${ch.readyState})`)), 10000);
      ch.addEventListener('open', () => { clearTimeout(timer); resolve(); });
      ch.addEventListener('error', (ev) => { clearTimeout(timer); reject(new Error(`${what}: ${ev.error ? ev.error.message : 'error'}`)); });
    });
  }

  function sendMessage(text) {
    if (!publisherChannel || publisherChannel.readyState !== 'open') return false;
    publisherChannel.send(text);
    demo.sent.push(text);
    logLine($('dcSent'), text);
    return true;
  }

  function logLine(list, text) {
    const li = document.createElement('li');
    li.textContent = `${new Date().toLocaleTimeString()}  ${text}`;
    list.prepend(li);
    while (list.children.length > 8) list.lastChild.remove();
  }

  $('dcForm').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const t = $('dcText').value.trim();
    if (t && sendMessage(t)) $('dcText').value = '';
  });

  // ---------- live status ----------

  function row(dl, label, value) {
    const dt = document.createElement('dt');
    dt.textContent = label;
    const dd = document.createElement('dd');
    dd.textContent = value;
    dl.append(dt, dd);
  }

  function kb(bytes) {
    return bytes === undefined ? '–' : `${(bytes / 1024).toFixed(0)} KiB`;
  }

  async function render(pc, sessionId, dl, inbound) {
    let video, audio;
    if (pc) {
      const want = inbound ? 'inbound-rtp' : 'outbound-rtp';
      (await pc.getStats()).forEach((s) => {
        if (s.type !== want) return;
        if (s.kind === 'video') video = s;
        if (s.kind === 'audio') audio = s;
      });
    }
    const size = video && video.frameWidth ? `${video.frameWidth}×${video.frameHeight} @ ${video.framesPerSecond ?? 0} fps` : '–';
    dl.replaceChildren();
    row(dl, 'session', sessionId || '–');
    row(dl, 'ICE', pc ? pc.iceConnectionState : '–');
    if (inbound) {
      row(dl, 'frames decoded', video ? String(video.framesDecoded ?? 0) : '–');
      row(dl, 'video', size);
      row(dl, 'received', `${kb(video && video.bytesReceived)} video · ${kb(audio && audio.bytesReceived)} audio`);
      row(dl, 'jitter', video && video.jitter !== undefined ? `${(video.jitter * 1000).toFixed(0)} ms` : '–');
    } else {
      row(dl, 'frames encoded', video ? String(video.framesEncoded ?? 0) : '–');
      row(dl, 'video', size);
      row(dl, 'sent', `${kb(video && video.bytesSent)} video · ${kb(audio && audio.bytesSent)} audio`);
      row(dl, 'tracks', pc ? 'microphone, camera' : '–');
    }
  }

  function refresh() {
    render(demo.pushPC, demo.pushSessionId, $('pushStats'), false).catch(() => {});
    render(demo.pullPC, demo.pullSessionId, $('pullStats'), true).catch(() => {});
  }
  setInterval(refresh, 1000);
  refresh();

  $('settings').addEventListener('submit', (ev) => {
    ev.preventDefault();
    start();
  });

  if (cfg.apps.length > 0) start();
})();
