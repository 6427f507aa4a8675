// pyreg UI: filter-as-you-type and copy buttons. Pages work without this file.
"use strict";
document.addEventListener("DOMContentLoaded", function () {
  // Filter the rows already on the page as the visitor types; the form's submit still asks
  // the server (?q=), which also searches the pages not shown.
  document.querySelectorAll("input[data-filter]").forEach(function (input) {
    var rows = document.querySelectorAll(input.getAttribute("data-filter"));
    input.addEventListener("input", function () {
      var wanted = input.value.trim().toLowerCase();
      rows.forEach(function (row) {
        var name = (row.getAttribute("data-name") || "").toLowerCase();
        row.hidden = wanted !== "" && name.indexOf(wanted) < 0;
      });
    });
  });
  // clipboard.js (vendored) also copies on plain-HTTP registries, where the async
  // Clipboard API is unavailable (not a secure context).
  if (window.ClipboardJS) {
    var clipboard = new window.ClipboardJS("button.copy");
    var say = function (event, text) {
      var button = event.trigger;
      button.textContent = text;
      button.setAttribute("data-copied", text === "Copied" ? "yes" : "no");
      setTimeout(function () { button.textContent = "Copy"; }, 2000);
    };
    clipboard.on("success", function (e) { e.clearSelection(); say(e, "Copied"); });
    clipboard.on("error", function (e) { say(e, "Press Ctrl+C"); });
  }
});
