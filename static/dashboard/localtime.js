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
  var hourMinute = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit" });
  var dayKey = new Intl.DateTimeFormat("en-CA", { year: "numeric", month: "2-digit", day: "2-digit" });
  // Reasons say "since 14:02 UTC": shown as the viewer's time, with the date only when it is
  // not the viewer's today.
  function short(when) {
    return dayKey.format(when) === dayKey.format(new Date()) ? hourMinute.format(when) : full.format(when);
  }
  function localise(root) {
    var nodes = root.querySelectorAll("time[datetime]:not([data-local])");
    for (var i = 0; i < nodes.length; i++) {
      var node = nodes[i];
      var when = new Date(node.getAttribute("datetime"));
      if (isNaN(when.getTime())) continue;
      var style = node.getAttribute("data-style");
      node.textContent = style === "short" ? short(when)
        : (style === "time" ? timeOnly : style === "hour" ? hourMinute : full).format(when);
      node.setAttribute("data-local", "");
    }
  }
  // The admin writes times as text, "2026-11-27 14:02 UTC" (backupsite/formats/): each becomes
  // a <time> like the dashboard's, then is localised with the rest.
  var UTC_TEXT = /\b(\d{4}-\d{2}-\d{2}) (\d{2}:\d{2})(:\d{2})? UTC\b/g;
  function wrapUtcText(root) {
    var walker = document.createTreeWalker(root, NodeFilter.SHOW_TEXT);
    var found = [];
    for (var node = walker.nextNode(); node; node = walker.nextNode()) {
      UTC_TEXT.lastIndex = 0;
      if (UTC_TEXT.test(node.nodeValue) && !node.parentNode.closest("time, script, style, textarea")) {
        found.push(node);
      }
    }
    found.forEach(function (node) {
      var text = node.nodeValue, last = 0, fragment = document.createDocumentFragment(), match;
      UTC_TEXT.lastIndex = 0;
      while ((match = UTC_TEXT.exec(text))) {
        fragment.appendChild(document.createTextNode(text.slice(last, match.index)));
        var time = document.createElement("time");
        var seconds = match[3] || ":00";
        time.setAttribute("datetime", match[1] + "T" + match[2] + seconds + "Z");
        time.setAttribute("title", match[1] + " " + match[2] + seconds + " UTC");
        time.textContent = match[0];
        fragment.appendChild(time);
        last = match.index + match[0].length;
      }
      fragment.appendChild(document.createTextNode(text.slice(last)));
      node.parentNode.replaceChild(fragment, node);
    });
  }
  document.addEventListener("DOMContentLoaded", function () {
    var admin = document.getElementById("content");
    if (admin) wrapUtcText(admin);
    localise(document);
  });
  // htmx swaps in fresh server HTML (in UTC): localise that too.
  document.addEventListener("htmx:afterSettle", function () { localise(document); });
})();
