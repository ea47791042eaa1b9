// Small progressive enhancements for every dashboard page; everything works without them.
(function () {
  "use strict";
  document.documentElement.classList.add("js");
  // The store switcher submits as soon as a store is picked; its button stays for keyboards and no-JS.
  document.querySelectorAll("select[data-autosubmit]").forEach(function (select) {
    select.addEventListener("change", function () {
      if (select.form) { select.form.submit(); }
    });
  });
})();
