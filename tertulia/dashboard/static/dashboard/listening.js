// Listening: keyboard shortcuts over the mentions (j/k move, o original, i inbox, / search, ? help).
// Everything here is also a link, a button or a form without scripts.
(function () {
  "use strict";
  var list = document.querySelector("[data-listening]");
  var help = document.getElementById("lst-help");
  var search = document.getElementById("lst-q");
  var current = 0;

  function items() { return list ? Array.prototype.slice.call(list.querySelectorAll(".lst-item")) : []; }

  function move(index, focus) {
    var all = items();
    if (!all.length) { return; }
    current = Math.max(0, Math.min(index, all.length - 1));
    all.forEach(function (item, i) { item.classList.toggle("is-current", i === current); });
    if (focus !== false) {
      all[current].focus();
      all[current].scrollIntoView({ block: "nearest" });
    }
  }

  function onItem() { return !!(document.activeElement && document.activeElement.closest && document.activeElement.closest(".lst-item")); }

  if (list) {
    list.addEventListener("focusin", function (event) {
      var item = event.target.closest(".lst-item");
      if (item) { move(items().indexOf(item), false); }
    });
  }

  document.addEventListener("keydown", function (event) {
    if (event.ctrlKey || event.metaKey || event.altKey) { return; }
    if (event.target.matches("input, textarea, select, [contenteditable]")) { return; }
    if (help && help.open && event.key !== "?") { return; }
    var item = items()[current];
    switch (event.key) {
      case "j": move(onItem() ? current + 1 : current); break;
      case "k": move(onItem() ? current - 1 : current); break;
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

  move(0, false);
})();
