// <also-borrowed>: "borrowers who borrowed this also borrowed" for a
// catalogue's title page. One file, no dependencies, no build step.
//
//   <script type="module" src="/also-borrowed.js"></script>
//   <also-borrowed title-id="9788702173512" feed="/feed/"
//                  href-template="/record/{id}"></also-borrowed>
//
// Attributes:
//   title-id       the title's catalogue id (required)
//   feed           URL of a published feed directory (any layout), or
//   api            URL of `alsoborrowed serve`'s API, e.g. "/api/v1/"
//   href-template  link for each title; "{id}" becomes the URL-encoded id
//                  (default "?title={id}")
//   limit          most titles shown (default: all the feed has)
//   label          heading (default "Borrowers who borrowed this also borrowed")
//
// Privacy: requests go only to the origin of `feed` or `api` (only http and
// https), without credentials and without a Referer; links carry
// referrerpolicy="no-referrer"; ids are only ever set as text or as encoded
// URL parts, never as markup. A title without a list renders nothing (the
// element gets `hidden`), as does a failed request.
//
// Styling: CSS custom properties on the element or any ancestor:
//   --also-borrowed-gap          space between items (default 0.25em)
//   --also-borrowed-link-color   link colour (default inherit)
//   --also-borrowed-font-size    list font size (default inherit)
//   --also-borrowed-heading-size heading font size (default 1.1em)
// and the classes also-borrowed__heading, also-borrowed__list,
// also-borrowed__item, also-borrowed__link.
//
// When done the element has state="loaded" (a list is shown) or
// state="empty", and fires an "also-borrowed-done" event whose detail is
// { titles: [...] }.

const indexCache = new Map();

// The base URL of a feed or the API, as a directory (a trailing "/" is
// added), so that relative file names resolve below it.
function allowedUrl(text) {
  const url = new URL(text, document.baseURI);
  if (url.protocol !== "https:" && url.protocol !== "http:") {
    throw new Error("feed and api must be http or https URLs");
  }
  if (!url.pathname.endsWith("/")) url.pathname += "/";
  url.search = "";
  url.hash = "";
  return url;
}

async function getJson(url) {
  const response = await fetch(url, {
    credentials: "omit",
    referrerPolicy: "no-referrer",
    cache: "default",
  });
  if (response.status === 404) return null;
  if (!response.ok) throw new Error("HTTP " + response.status);
  return response.json();
}

// SHA-256 of a byte array, as bytes: crypto.subtle where there is a secure
// context, this small fallback elsewhere (plain http on a LAN).
const K = new Uint32Array([
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
  0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
  0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
  0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
  0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
  0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
  0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
  0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
]);

function sha256Fallback(bytes) {
  const h = new Uint32Array([
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
  ]);
  const padded = new Uint8Array(((bytes.length + 9 + 63) >> 6) << 6);
  padded.set(bytes);
  padded[bytes.length] = 0x80;
  const view = new DataView(padded.buffer);
  view.setUint32(padded.length - 8, Math.floor(bytes.length / 0x20000000));
  view.setUint32(padded.length - 4, (bytes.length * 8) >>> 0);
  const w = new Uint32Array(64);
  const rotr = (x, n) => (x >>> n) | (x << (32 - n));
  for (let off = 0; off < padded.length; off += 64) {
    for (let i = 0; i < 16; i++) w[i] = view.getUint32(off + i * 4);
    for (let i = 16; i < 64; i++) {
      const s0 = rotr(w[i - 15], 7) ^ rotr(w[i - 15], 18) ^ (w[i - 15] >>> 3);
      const s1 = rotr(w[i - 2], 17) ^ rotr(w[i - 2], 19) ^ (w[i - 2] >>> 10);
      w[i] = (w[i - 16] + s0 + w[i - 7] + s1) >>> 0;
    }
    let [a, b, c, d, e, f, g, hh] = h;
    for (let i = 0; i < 64; i++) {
      const t1 = (hh + (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) + ((e & f) ^ (~e & g)) + K[i] + w[i]) >>> 0;
      const t2 = ((rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) + ((a & b) ^ (a & c) ^ (b & c))) >>> 0;
      hh = g; g = f; f = e; e = (d + t1) >>> 0; d = c; c = b; b = a; a = (t1 + t2) >>> 0;
    }
    h[0] += a; h[1] += b; h[2] += c; h[3] += d; h[4] += e; h[5] += f; h[6] += g; h[7] += hh;
  }
  const out = new Uint8Array(32);
  const outView = new DataView(out.buffer);
  h.forEach((v, i) => outView.setUint32(i * 4, v));
  return out;
}

async function sha256(bytes) {
  if (globalThis.crypto && crypto.subtle) {
    return new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  }
  return sha256Fallback(bytes);
}

// File stem of a title id (docs/feed.md, "File names").
async function fileStem(id) {
  const bytes = new TextEncoder().encode(id);
  let s = "";
  for (const b of bytes) {
    const c = String.fromCharCode(b);
    s += /[a-z0-9_-]/.test(c) ? c : "%" + b.toString(16).toUpperCase().padStart(2, "0");
    if (s.length > 200) break;
  }
  if (s.length <= 200) return s;
  const digest = await sha256(bytes);
  return "~" + Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
}

// Related titles of `id` from a static feed directory at `base`.
async function fromFeed(base, id) {
  const key = base.href;
  if (!indexCache.has(key)) {
    const pending = getJson(new URL("index.json", base));
    pending.catch(() => indexCache.delete(key));
    indexCache.set(key, pending);
  }
  const index = await indexCache.get(key);
  if (!index) return [];
  const layout = index.layout || (index.schema_version === 2 ? "shards" : "titles");
  let related;
  if (layout === "shards") {
    const bits = index.shard_bits;
    const digest = await sha256(new TextEncoder().encode(id));
    const first = new DataView(digest.buffer).getUint32(0);
    const shard = bits === 0 ? 0 : first >>> (32 - bits);
    const name = shard.toString(16).padStart(Math.max(1, Math.ceil(bits / 4)), "0");
    const file = await getJson(new URL("shards/" + name + ".json", base));
    related = file && file.titles.find((t) => t.title === id)?.related;
  } else {
    const stem = await fileStem(id);
    const file = await getJson(new URL("titles/" + encodeURIComponent(stem) + ".json", base));
    related = file && file.title === id ? file.related : null;
  }
  // Versions 1 and 2 list {title, score}; version 3 lists ids.
  return (related || []).map((r) => (typeof r === "string" ? r : r.title));
}

// Related titles of `id` from `alsoborrowed serve`'s API at `base`.
async function fromApi(base, id, limit) {
  const url = new URL("related/" + encodeURIComponent(id), base);
  if (limit) url.searchParams.set("limit", String(limit));
  const body = await getJson(url);
  return (body && body.related) || [];
}

let headingCount = 0;

class AlsoBorrowed extends HTMLElement {
  #generation = 0;

  static get observedAttributes() {
    return ["title-id", "feed", "api", "limit", "href-template", "label"];
  }

  connectedCallback() {
    this.#update();
  }

  attributeChangedCallback() {
    if (this.isConnected) this.#update();
  }

  async #update() {
    const generation = ++this.#generation;
    const id = this.getAttribute("title-id");
    const limitText = this.getAttribute("limit");
    const limit = limitText && /^[1-9][0-9]*$/.test(limitText) ? Number(limitText) : 0;
    let titles = [];
    try {
      if (id) {
        if (this.hasAttribute("api")) {
          titles = await fromApi(allowedUrl(this.getAttribute("api")), id, limit);
        } else if (this.hasAttribute("feed")) {
          titles = await fromFeed(allowedUrl(this.getAttribute("feed")), id);
        }
      }
    } catch (_) {
      // A broken feed or network error shows nothing: the title page works
      // without the list.
      titles = [];
    }
    if (generation !== this.#generation) return;
    if (limit) titles = titles.slice(0, limit);
    this.#render(titles);
  }

  #render(titles) {
    this.replaceChildren();
    if (titles.length === 0) {
      // `hidden`, and display none in case page CSS sets a display.
      this.hidden = true;
      this.style.display = "none";
      this.setAttribute("state", "empty");
      this.dispatchEvent(new CustomEvent("also-borrowed-done", { detail: { titles } }));
      return;
    }
    this.hidden = false;
    this.style.display = "";
    const template = this.getAttribute("href-template") || "?title={id}";
    const headingId = "also-borrowed-heading-" + ++headingCount;
    const section = document.createElement("section");
    section.setAttribute("aria-labelledby", headingId);
    const heading = document.createElement("h2");
    heading.id = headingId;
    heading.className = "also-borrowed__heading";
    heading.textContent =
      this.getAttribute("label") || "Borrowers who borrowed this also borrowed";
    heading.style.fontSize = "var(--also-borrowed-heading-size, 1.1em)";
    const list = document.createElement("ol");
    list.className = "also-borrowed__list";
    list.style.fontSize = "var(--also-borrowed-font-size, inherit)";
    for (const title of titles) {
      const item = document.createElement("li");
      item.className = "also-borrowed__item";
      item.style.marginBlockEnd = "var(--also-borrowed-gap, 0.25em)";
      const link = document.createElement("a");
      link.className = "also-borrowed__link";
      link.href = template.split("{id}").join(encodeURIComponent(title));
      link.referrerPolicy = "no-referrer";
      link.rel = "noreferrer";
      link.textContent = title;
      link.style.color = "var(--also-borrowed-link-color, inherit)";
      item.append(link);
      list.append(item);
    }
    // Arrow keys move between the links; Tab still leaves the list.
    list.addEventListener("keydown", (event) => {
      const links = Array.from(list.querySelectorAll("a"));
      const at = links.indexOf(document.activeElement);
      if (at < 0) return;
      let next = -1;
      if (event.key === "ArrowDown") next = Math.min(at + 1, links.length - 1);
      else if (event.key === "ArrowUp") next = Math.max(at - 1, 0);
      else if (event.key === "Home") next = 0;
      else if (event.key === "End") next = links.length - 1;
      if (next >= 0) {
        event.preventDefault();
        links[next].focus();
      }
    });
    section.append(heading, list);
    this.append(section);
    this.setAttribute("state", "loaded");
    this.dispatchEvent(new CustomEvent("also-borrowed-done", { detail: { titles } }));
  }
}

if (!customElements.get("also-borrowed")) {
  customElements.define("also-borrowed", AlsoBorrowed);
}

export { AlsoBorrowed, fileStem, sha256Fallback };
