// Test page script (served from the same origin, as the CSP requires):
// once every <also-borrowed> is done, writes what each one rendered into
// <pre id="result"> for the test to read from the dumped DOM, with every
// resource the page loaded and every request the CSP blocked.
const violations = [];
document.addEventListener("securitypolicyviolation", (e) => violations.push(e.blockedURI));
const widgets = Array.from(document.querySelectorAll("also-borrowed"));
const done = widgets.map(
  (w) =>
    new Promise((resolve) => {
      if (w.hasAttribute("state")) resolve();
      else w.addEventListener("also-borrowed-done", () => resolve(), { once: true });
    }),
);
Promise.all(done).then(() => {
  const result = widgets.map((w) => {
    const section = w.querySelector("section");
    const heading = section && document.getElementById(section.getAttribute("aria-labelledby"));
    return {
      case: w.dataset.case,
      state: w.getAttribute("state"),
      hidden: w.hidden,
      children: w.children.length,
      labelled: Boolean(heading && heading.textContent.length > 0),
      list: Array.from(w.querySelectorAll("ol > li > a")).map((a) => ({
        text: a.textContent,
        href: a.getAttribute("href"),
        referrer: a.referrerPolicy,
      })),
    };
  });
  const resources = performance.getEntriesByType("resource").map((r) => r.name);
  document.getElementById("result").textContent = JSON.stringify({
    widgets: result,
    resources,
    violations,
  });
});
