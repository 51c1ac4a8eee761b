// Shows every <time datetime="...Z"> in the viewer's time zone; the UTC text stays in its
// title. Progressive enhancement: without JavaScript the page reads in UTC.
(function () {
  "use strict";
  var full = new Intl.DateTimeFormat(undefined, {
    year: "numeric", month: "short", day: "numeric", hour: "2-digit", minute: "2-digit",
  });
  var timeOnly = new Intl.DateTimeFormat(undefined, {
    hour: "2-digit", minute: "2-digit", second: "2-digit",
  });
  function localise(root) {
    var nodes = root.querySelectorAll("time[datetime]:not([data-local])");
    for (var i = 0; i < nodes.length; i++) {
      var node = nodes[i];
      var when = new Date(node.getAttribute("datetime"));
      if (isNaN(when.getTime())) continue;
      var format = node.getAttribute("data-style") === "time" ? timeOnly : full;
      node.textContent = format.format(when);
      node.setAttribute("data-local", "");
    }
  }
  document.addEventListener("DOMContentLoaded", function () { localise(document); });
  // htmx swaps in fresh server HTML (in UTC): localise that too.
  document.addEventListener("htmx:afterSettle", function () { localise(document); });
})();
