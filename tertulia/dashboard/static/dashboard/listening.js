// Listening: keyboard shortcuts over the mentions (j/k move, o original, i inbox, / search, ? help).
// Everything here is also a link, a button or a form without scripts.
(function () {
  "use strict";
  var list = document.querySelector("[data-listening]");
  var help = document.getElementById("lst-help");
  var search = document.getElementById("lst-q");
  var nav = window.TertuliaKeyList(list, ".lst-item");

  document.addEventListener("keydown", function (event) {
    if (event.ctrlKey || event.metaKey || event.altKey) { return; }
    if (event.target.matches("input, textarea, select, [contenteditable]")) { return; }
    if (help && help.open && event.key !== "?") { return; }
    var item = nav.item();
    switch (event.key) {
      case "j": nav.step(1); break;
      case "k": nav.step(-1); break;
      case "o": {
        var link = item && item.querySelector("[data-original]");
        if (!link) { return; }
        window.open(link.href, "_blank", "noopener");
        break;
      }
      case "i": {
        var inbox = item && item.querySelector("[data-inbox]");
        if (!inbox) { return; }
        inbox.click();
        break;
      }
      case "/": if (!search) { return; } search.focus(); break;
      case "?":
        if (!help) { return; }
        if (help.open) { help.close(); } else { help.showModal(); }
        break;
      default: return;
    }
    event.preventDefault();
  });

  nav.move(0, false);
})();
