// Small progressive enhancements for every dashboard page; everything works without them.
(function () {
  "use strict";

  // A list walked with the keyboard (moderation queue, mentions, inbox): one item is current; j/k step
  // from it when it has the focus, and clicking or tabbing into an item makes it current.
  window.TertuliaKeyList = function (root, selector) {
    var current = 0;
    function items() { return root ? Array.prototype.slice.call(root.querySelectorAll(selector)) : []; }
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
    function focused() {
      var active = document.activeElement;
      return !!(active && active.closest && active.closest(selector));
    }
    if (root) {
      root.addEventListener("focusin", function (event) {
        var item = event.target.closest(selector);
        if (item) { move(items().indexOf(item), false); }
      });
    }
    return {
      items: items,
      move: move,
      current: function () { return current; },
      item: function () { return items()[current]; },
      // j/k: the first press only brings the focus to the current item.
      step: function (delta) { move(focused() ? current + delta : current); },
    };
  };
  document.documentElement.classList.add("js");
  // The store switcher submits as soon as a store is picked; its button stays for keyboards and no-JS.
  document.querySelectorAll("select[data-autosubmit]").forEach(function (select) {
    select.addEventListener("change", function () {
      if (select.form) { select.form.submit(); }
    });
  });
})();
