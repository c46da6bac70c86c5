// Runs before the first paint: the colour theme the viewer chose (light, dark), or the
// system's when they chose none ("auto"). app.js switches it.
(function () {
  var pref = "auto";
  try { pref = localStorage.getItem("streamdist-theme") || "auto"; } catch (e) { /* storage off */ }
  var dark = pref === "dark" || (pref === "auto" && window.matchMedia("(prefers-color-scheme: dark)").matches);
  document.documentElement.setAttribute("data-bs-theme", dark ? "dark" : "light");
})();
