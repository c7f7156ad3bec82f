{% autoescape off %}// The app shell's service worker, from localai_site/app_shell.py.
// It keeps only the files listed below (the site's own static files and the offline page), in
// one cache named after their contents. Pages, conversations and API answers are never stored:
// they go to the network, private and fresh; a page the network can't bring gets the offline page.
const CACHE_NAME = {{ cache_name }};
const CACHE_PREFIX = {{ cache_prefix }};
const SHELL = new Set({{ shell_urls }});
const OFFLINE_URL = {{ offline_url }};
// What a reverse proxy answers while the instance behind it is down.
const GATEWAY_ERRORS = new Set([502, 504]);

self.addEventListener("install", (event) => {
  event.waitUntil((async () => {
    const cache = await caches.open(CACHE_NAME);
    // Past the HTTP cache, so that a new version is not filled with the old files.
    await cache.addAll([...SHELL].map((url) => new Request(url, { cache: "reload" })));
    await self.skipWaiting();
  })());
});

self.addEventListener("activate", (event) => {
  event.waitUntil((async () => {
    const names = await caches.keys();
    await Promise.all(
      names.filter((name) => name.startsWith(CACHE_PREFIX) && name !== CACHE_NAME).map((name) => caches.delete(name)),
    );
    // Pages start loading while the worker wakes up, not after.
    await self.registration.navigationPreload?.enable();
    await self.clients.claim();
  })());
});

self.addEventListener("fetch", (event) => {
  const { request } = event;
  if (request.method !== "GET") return;
  if (request.mode === "navigate") {
    event.respondWith(pageOrOffline(event));
    return;
  }
  const url = new URL(request.url);
  if (url.origin === self.location.origin && SHELL.has(url.pathname)) {
    event.respondWith(caches.match(request, { cacheName: CACHE_NAME }).then((kept) => kept || fetch(request)));
  }
  // Anything else is left to the browser, as if there were no worker.
});

async function pageOrOffline(event) {
  try {
    const response = (await event.preloadResponse) || (await fetch(event.request));
    if (!GATEWAY_ERRORS.has(response.status)) return response;
  } catch {
    // Offline, or the server refused the connection: the offline page below.
  }
  return (await caches.match(OFFLINE_URL, { cacheName: CACHE_NAME })) || Response.error();
}
{% endautoescape %}
