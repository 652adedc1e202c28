// Offline use: every successful GET is cached; when the network is gone the cached copy answers.
// One cache per build (the page registers `sw.js?build=<id>`): activating a new build's worker
// deletes the caches of the others, so old builds' files do not pile up.
const CACHE = `cifar-burn-${new URL(self.location).searchParams.get("build") ?? "dev"}`;
self.addEventListener("install", () => self.skipWaiting());
self.addEventListener("activate", (event) => event.waitUntil((async () => {
  for (const name of await caches.keys()) {
    if (name !== CACHE) await caches.delete(name);
  }
  await self.clients.claim();
})()));
// Only this site's own files are cached: the user's images and checkpoints are read from disk
// by the page, never fetched, and nothing from elsewhere is kept.
self.addEventListener("fetch", (event) => {
  if (event.request.method !== "GET" || new URL(event.request.url).origin !== self.location.origin) return;
  event.respondWith((async () => {
    const cache = await caches.open(CACHE);
    try {
      const response = await fetch(event.request);
      if (response.ok) cache.put(event.request, response.clone());
      return response;
    } catch (error) {
      const hit = await cache.match(event.request);
      if (hit) return hit;
      throw error;
    }
  })());
});
