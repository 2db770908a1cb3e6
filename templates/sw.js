// Service worker, rendered by the app (version {{ shell_version() }}).
// App shell and static assets: cache first (their URLs are fingerprinted, so they never go stale).
// Pages: network first, falling back to the last copy seen, then to the offline page.
// Images: cache first (immutable). Everything else (generation, streams, deletes) is network only.
// Nothing marked `no-store` and no export is ever stored. A 401 or a way to /login means this
// browser is logged out: the copies of pages and images go at once, not only on "Log out".
"use strict";

const VERSION = "{{ shell_version() }}";
const SHELL = "chat-shell-" + VERSION;
const PAGES = "chat-pages-v1";
const IMAGES = "chat-images-v1";
// Exports hold the whole history: always from the network, never kept.
const EXPORTS = ["/chatlog.json", "/chatlog.full.json", "/chatlog.md", "/backup.zip"];
const PRECACHE = [
  "/offline",
{%- for name in shell_assets %}
  "{{ asset(name) }}",
{%- endfor %}
];

self.addEventListener("install", (event) => {
  event.waitUntil(
    Promise.all([
      caches.open(SHELL).then((cache) => cache.addAll(PRECACHE)),
      // The start page, so the installed app opens offline even if "/" loaded before this worker.
      caches.open(PAGES).then((cache) =>
        fetch(offlineCopyRequest(new Request("/"))).then((response) =>
          storable(response) && !loggedOut(response) ? cache.put("/", response) : undefined
        )
      ).catch(() => undefined),
    ]).then(() => self.skipWaiting())
  );
});

self.addEventListener("activate", (event) => {
  event.waitUntil(
    caches.keys()
      .then((keys) => Promise.all(
        keys.filter((key) => key.startsWith("chat-shell-") && key !== SHELL).map((key) => caches.delete(key))
      ))
      .then(() => self.clients.claim())
  );
});

function isPage(request, url) {
  return request.mode === "navigate" ||
    (request.headers.get("Accept") || "").includes("text/html") && !request.headers.get("HX-Request");
}

function clearHistory() {
  return Promise.all([caches.delete(PAGES), caches.delete(IMAGES)]);
}

// The server says this browser is not (or no longer) logged in.
function loggedOut(response) {
  return response.status === 401 ||
    (response.redirected && new URL(response.url).pathname === "/login");
}

function storable(response) {
  return response.ok && response.type === "basic" && !response.redirected &&
    !/(^|,)\s*no-store\s*(,|$)/i.test(response.headers.get("Cache-Control") || "");
}

// Pages are `no-store` unless the worker asks for a copy to keep (X-Offline-Copy): then they
// come `private, no-cache`. Always from the server while online, never the HTTP cache's copy (a
// back navigation would take that one unchecked and show a stale history).
function offlineCopyRequest(request) {
  const headers = new Headers(request.headers);
  headers.set("X-Offline-Copy", "1");
  return new Request(request, { cache: "no-store", headers });
}

async function networkOnly(request) {
  const response = await fetch(request);
  if (loggedOut(response)) await clearHistory();
  return response;
}

async function networkFirst(request) {
  const cache = await caches.open(PAGES);
  try {
    const response = await fetch(offlineCopyRequest(request));
    if (loggedOut(response) || new URL(request.url).pathname === "/login") {
      await clearHistory();
    } else if (storable(response)) {
      await cache.put(request, response.clone());
    }
    return response;
  } catch (error) {
    const cached = await cache.match(request, { ignoreVary: true });
    if (cached) return cached;
    const shell = await caches.open(SHELL);
    return (await shell.match("/offline")) || Response.error();
  }
}

async function cacheFirst(request, cacheName) {
  const cache = await caches.open(cacheName);
  const cached = await cache.match(request, { ignoreVary: true });
  if (cached) return cached;
  const response = await fetch(request);
  if (loggedOut(response)) {
    await clearHistory();
  } else if (storable(response)) {
    await cache.put(request, response.clone());
  }
  return response;
}

self.addEventListener("fetch", (event) => {
  const request = event.request;
  const url = new URL(request.url);
  if (request.method !== "GET" || url.origin !== self.location.origin) return;
  if (url.pathname.endsWith("/stream") || url.pathname === "/sw.js") return;
  if (url.pathname.startsWith("/static/")) {
    event.respondWith(cacheFirst(request, SHELL));
  } else if (url.pathname.startsWith("/images/")) {
    event.respondWith(cacheFirst(request, IMAGES));
  } else if (EXPORTS.includes(url.pathname) || !isPage(request, url)) {
    // Fragments, JSON and exports: never stored, but a 401 among them still clears the copies.
    event.respondWith(networkOnly(request));
  } else {
    event.respondWith(networkFirst(request));
  }
});

// The page asks for this on logout: nothing of the history stays behind in this browser.
self.addEventListener("message", (event) => {
  if (event.data === "clear-history") {
    event.waitUntil(clearHistory());
  }
});
