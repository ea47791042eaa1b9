/* Tertulia reviews widget: <tertulia-reviews store="slug" product="SKU"> on any page, one script tag.
   No dependencies. Content from the API is only ever written with textContent / Text nodes, never as
   markup, and the only URLs taken from content are http(s) photo links. */
(() => {
  "use strict";
  if (customElements.get("tertulia-reviews")) return;

  // Where the API lives by default: wherever this script was loaded from (a store page on another
  // domain includes <script src="https://tertulia.example/widget.js">).
  const SCRIPT = document.currentScript || document.querySelector("script[src*='widget.js']");
  const ORIGIN = (() => {
    try { return new URL(SCRIPT.src, location.href).origin; } catch (_) { return location.origin; }
  })();
  const MAX_PHOTOS = 4;
  const PAGE = 10;

  const plural = (one, other) => (n, fmt) => (n === 1 ? one : other).replace("#", fmt(n));
  const TEXT = {
    en: {
      reviews: "Reviews", summary: "Rating summary", noneRated: "No reviews with this rating.", byRating: "Filter by rating", none: "No reviews yet. Be the first to write one.",
      count: plural("# review", "# reviews"), stars: (n) => `${n} out of 5 stars`, starN: plural("# star", "# stars"),
      bar: (s, n, p) => `${s}: ${n} (${p}%)`, sort: "Sort by", filter: "Rating", all: "All ratings",
      newest: "Newest", oldest: "Oldest", highest: "Highest rating", lowest: "Lowest rating",
      helpfulSort: "Most helpful", more: "Show more reviews", verified: "Verified buyer",
      helpful: (n) => `Helpful (${n})`, voted: "Thanks for your vote.", reply: "Reply from the store",
      anon: "Anonymous", photo: (i, a) => `Photo ${i} from ${a}`, write: "Write a review",
      rating: "Your rating", title: "Title", text: "Your review", name: "Your name (shown)",
      nameHint: "Leave it empty to post anonymously.", email: "E-mail (optional, never shown)",
      photos: `Photos (up to ${MAX_PHOTOS})`, tooMany: `Choose at most ${MAX_PHOTOS} photos.`,
      send: "Send review", sending: "Sending…", cancel: "Cancel", required: "Please fill in this field.",
      chooseRating: "Please choose a rating.", qa: "Questions and answers", noQ: "No questions yet.",
      ask: "Ask a question", question: "Your question", sendQ: "Send question", staff: "Store team",
      buyer: "Buyer", answers: plural("# answer", "# answers"), faq: "Frequently asked questions",
      published: "Thank you! Your review is published.", held: "Thank you! A person will check it before it appears.",
      rejected: "This could not be published.", qPublished: "Thank you! Your question is published.",
      loadError: "Reviews could not be loaded.", retry: "Try again", sendError: "Could not send it. Please try again.",
      loading: "Loading…", filtered: (n) => `Showing ${n}`, clear: "Show all",
      report: "Report", why: "Reason", sendReport: "Send report", reported: "Thank you, a person will look at it.",
      flags: ["spam", "Spam or advertising", "offensive", "Insulting or offensive", "off_topic", "Off topic",
        "personal_data", "Personal data", "fake", "Fake or misleading", "other", "Other"],
      thanks: "Thank you!", answer: "Answer this question", yourAnswer: "Your answer", sendA: "Send answer",
    },
    es: {
      reviews: "Opiniones", summary: "Resumen de valoraciones", noneRated: "No hay opiniones con esta puntuación.", byRating: "Filtrar por puntuación", none: "Todavía no hay opiniones. Sé el primero en escribir una.",
      count: plural("# opinión", "# opiniones"), stars: (n) => `${n} de 5 estrellas`, starN: plural("# estrella", "# estrellas"),
      bar: (s, n, p) => `${s}: ${n} (${p} %)`, sort: "Ordenar por", filter: "Puntuación", all: "Todas",
      newest: "Más recientes", oldest: "Más antiguas", highest: "Mejor valoradas", lowest: "Peor valoradas",
      helpfulSort: "Más útiles", more: "Ver más opiniones", verified: "Compra verificada",
      helpful: (n) => `Útil (${n})`, voted: "Gracias por tu voto.", reply: "Respuesta de la tienda",
      anon: "Anónimo", photo: (i, a) => `Foto ${i} de ${a}`, write: "Escribe una opinión",
      rating: "Tu puntuación", title: "Título", text: "Tu opinión", name: "Tu nombre (visible)",
      nameHint: "Déjalo vacío para publicar de forma anónima.", email: "Correo electrónico (opcional, nunca se muestra)",
      photos: `Fotos (hasta ${MAX_PHOTOS})`, tooMany: `Elige como máximo ${MAX_PHOTOS} fotos.`,
      send: "Enviar opinión", sending: "Enviando…", cancel: "Cancelar", required: "Rellena este campo.",
      chooseRating: "Elige una puntuación.", qa: "Preguntas y respuestas", noQ: "Todavía no hay preguntas.",
      ask: "Haz una pregunta", question: "Tu pregunta", sendQ: "Enviar pregunta", staff: "Equipo de la tienda",
      buyer: "Comprador", answers: plural("# respuesta", "# respuestas"), faq: "Preguntas frecuentes",
      published: "¡Gracias! Tu opinión ya está publicada.", held: "¡Gracias! Una persona la revisará antes de publicarla.",
      rejected: "No se ha podido publicar.", qPublished: "¡Gracias! Tu pregunta ya está publicada.",
      loadError: "No se pudieron cargar las opiniones.", retry: "Reintentar", sendError: "No se pudo enviar. Inténtalo de nuevo.",
      loading: "Cargando…", filtered: (n) => `Mostrando ${n}`, clear: "Ver todas",
      report: "Denunciar", why: "Motivo", sendReport: "Enviar denuncia", reported: "Gracias, una persona lo revisará.",
      flags: ["spam", "Spam o publicidad", "offensive", "Insultante u ofensivo", "off_topic", "No tiene que ver",
        "personal_data", "Datos personales", "fake", "Falso o engañoso", "other", "Otro"],
      thanks: "¡Gracias!", answer: "Responder a esta pregunta", yourAnswer: "Tu respuesta", sendA: "Enviar respuesta",
    },
  };

  // One random id per browser, so votes count once and rate limits see a stable device.
  let memoryId = "";
  const deviceId = () => {
    const make = () => (crypto.randomUUID ? crypto.randomUUID()
      : Array.from(crypto.getRandomValues(new Uint8Array(16)), (b) => b.toString(16).padStart(2, "0")).join(""));
    try {
      let id = localStorage.getItem("tertulia-device");
      if (!id) localStorage.setItem("tertulia-device", (id = make()));
      return id;
    } catch (_) {
      return memoryId || (memoryId = make()); // storage blocked (private mode, sandboxed frame)
    }
  };

  // Build elements without ever parsing markup: strings become Text nodes, props become attributes
  // or listeners (keys are always ours, never from content).
  const h = (tag, props, ...kids) => {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(props || {})) {
      if (v == null || v === false) continue;
      if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
      else if (k === "class") el.className = v;
      else el.setAttribute(k, v === true ? "" : v);
    }
    for (const kid of kids.flat(9)) if (kid != null && kid !== false) el.append(kid);
    return el;
  };
  const str = (v) => (typeof v === "string" ? v : v == null ? "" : String(v));
  let uid = 0;
  const nextId = (p) => `tr-${p}-${++uid}`;

  const CSS = `
:host{display:block;font:inherit;color:inherit;--a:var(--tertulia-accent,#9a4a1c);--m:var(--tertulia-muted,#5f5a55);--b:var(--tertulia-border,#ddd6cf);--bg:var(--tertulia-surface,#fff)}
*{box-sizing:border-box}[hidden]{display:none!important}
section{margin:0 0 1.5em}h2{font-size:1.3em;margin:.2em 0 .6em}h3{font-size:1.05em;margin:.2em 0}
.sr{position:absolute;width:1px;height:1px;overflow:hidden;clip:rect(0 0 0 0);white-space:nowrap}
.row{display:flex;flex-wrap:wrap;gap:.6em 1em;align-items:center}
.sum{display:flex;flex-wrap:wrap;gap:1em 2em;align-items:center;margin-bottom:1em}
.big{font-size:2.4em;font-weight:700;line-height:1}.st{color:var(--a);letter-spacing:.08em}.m{color:var(--m);font-size:.92em}
.hist{display:grid;gap:.25em;min-width:15em}.hist button{display:grid;grid-template-columns:4.5em 1fr 2.5em;gap:.5em;align-items:center;background:none;border:0;padding:.15em .2em;font:inherit;color:inherit;cursor:pointer;text-align:left;border-radius:4px}
.hist button[aria-pressed=true]{background:#f4ece5;font-weight:600}.track{height:.6em;background:#eee8e2;border-radius:1em;overflow:hidden}.fill{display:block;height:100%;background:var(--a)}
button,select,input,textarea{font:inherit}
.btn{background:var(--a);color:#fff;border:1px solid var(--a);border-radius:6px;padding:.45em 1em;cursor:pointer}
.btn2{background:var(--bg);color:var(--a);border:1px solid var(--a);border-radius:6px;padding:.35em .9em;cursor:pointer}
.btn:disabled,.btn2:disabled{opacity:.6;cursor:default}
:focus-visible{outline:3px solid var(--a);outline-offset:2px}
select,input[type=text],input[type=email],textarea{border:1px solid #b9b0a8;border-radius:6px;padding:.4em .55em;background:var(--bg);color:inherit;max-width:100%}
ol,ul{list-style:none;margin:0;padding:0}
.rv{border-top:1px solid var(--b);padding:1em 0}.rv h3{margin:.3em 0}.tx{white-space:pre-line;margin:.4em 0;overflow-wrap:anywhere}
.badge{display:inline-block;font-size:.8em;background:#e6f2e8;color:#1d5c2c;border-radius:1em;padding:.1em .6em}
.ph{display:flex;gap:.5em;flex-wrap:wrap;margin:.5em 0}.ph img{width:84px;height:84px;object-fit:cover;border-radius:6px;border:1px solid var(--b)}
.rep{border-left:3px solid var(--a);padding:.3em .8em;margin:.6em 0;background:#faf6f2}
form{border:1px solid var(--b);border-radius:8px;padding:1em;margin:1em 0;display:grid;gap:.8em;max-width:36em}
label{display:block;font-weight:600;margin-bottom:.2em}.f input[type=text],.f input[type=email],.f textarea{width:100%}
fieldset{border:0;padding:0;margin:0}legend{font-weight:600;padding:0;margin-bottom:.2em}
.rate{display:flex;gap:.15em}.rate input{position:absolute;opacity:0;width:1px;height:1px}
.rate label{font-size:1.7em;line-height:1;color:#c9beb4;cursor:pointer;margin:0;font-weight:400;padding:0 .05em;border-radius:4px}
.rate label.on{color:var(--a)}.rate input:focus-visible+label{outline:3px solid var(--a)}
.err{color:#a4161a;font-size:.9em;margin:.2em 0 0}[aria-invalid=true]{border-color:#a4161a}
.msg{border-radius:6px;padding:.7em 1em;margin:.8em 0}.msg:empty{display:none}.ok{background:#e6f2e8}.hold{background:#fff4d6}.no{background:#fde7e7}
.msg ul{list-style:disc;padding-left:1.2em;margin:.3em 0 0}
section>.row{margin:.6em 0}.q{border-top:1px solid var(--b);padding:.8em 0}.q p{margin:.2em 0}.ans{margin:.5em 0 0 1.2em;padding-left:.8em;border-left:2px solid var(--b)}.ans .btn2{font-size:.85em;padding:.15em .6em}
details{border-top:1px solid var(--b);padding:.6em 0}summary{cursor:pointer;font-weight:600}
.rp{border:0;padding:0;font-size:.92em}.rp summary{font-weight:400;color:var(--m)}.mini{margin:.5em 0;padding:.7em}
`;

  class TertuliaReviews extends HTMLElement {
    static get observedAttributes() { return ["store", "product", "lang", "api"]; }

    constructor() {
      super();
      this.root = this.attachShadow({ mode: "open" });
      this.state = { sort: "newest", rating: "", items: [], next: null };
    }

    connectedCallback() { this.render(); }

    attributeChangedCallback(_name, before, after) {
      if (this.isConnected && this.built && before !== after) this.render();
    }

    get ui() {
      const own = this.getAttribute("lang") || (this.closest("[lang]") || document.documentElement).lang || "";
      return own.toLowerCase().startsWith("es") ? "es" : "en";
    }

    t(key, ...args) {
      const v = (TEXT[this.ui] || TEXT.en)[key];
      return typeof v === "function" ? v(...args) : v;
    }

    num(n, digits = 0) {
      return new Intl.NumberFormat(this.ui, { minimumFractionDigits: digits, maximumFractionDigits: digits }).format(n);
    }

    date(value) {
      const d = new Date(value);
      return isNaN(d) ? "" : new Intl.DateTimeFormat(this.ui, { dateStyle: "medium" }).format(d);
    }

    base() {
      const store = encodeURIComponent(this.getAttribute("store") || "");
      return `${(this.getAttribute("api") || ORIGIN).replace(/\/+$/, "")}/api/v1/public/${store}`;
    }

    productBase() { return `${this.base()}/products/${encodeURIComponent(this.getAttribute("product") || "")}`; }

    // Photo and other content URLs: only absolute http(s), resolved against the API, else dropped.
    safeUrl(value) {
      try {
        const u = new URL(str(value), this.getAttribute("api") || ORIGIN);
        return u.protocol === "https:" || u.protocol === "http:" ? u.href : null;
      } catch (_) { return null; }
    }

    async call(url, options = {}) {
      const response = await fetch(url, {
        credentials: "omit", ...options,
        headers: { Accept: "application/json", "Accept-Language": this.ui, ...(options.headers || {}) },
      });
      let body = null;
      try { body = await response.json(); } catch (_) { /* empty or not JSON */ }
      if (!response.ok) {
        const err = new Error((body && body.error && body.error.message) || `HTTP ${response.status}`);
        err.body = body;
        err.status = response.status;
        throw err;
      }
      return body || {};
    }

    stars(rating) {
      const r = Math.max(0, Math.min(5, Math.round(Number(rating) || 0)));
      return h("span", { class: "st", role: "img", "aria-label": this.t("stars", this.num(Number(rating) || 0, Number.isInteger(Number(rating)) ? 0 : 1)) },
        "★".repeat(r) + "☆".repeat(5 - r));
    }

    render() {
      this.built = true;
      this.state = { sort: this.state.sort, rating: "", items: [], next: null };
      const live = h("div", { class: "sr", "aria-live": "polite" });
      this.live = live;
      this.summaryBox = h("div", { class: "sum" });
      this.list = h("ol", { class: "list" });
      this.moreBtn = h("button", { type: "button", class: "btn2", hidden: true, onclick: () => this.loadReviews(true) }, this.t("more"));
      this.reviewMsg = h("div", { class: "msg", tabindex: "-1", role: "status" });
      this.reviewForm = this.buildReviewForm();
      this.writeBtn = this.toggler(this.t("write"), this.reviewForm);
      this.sortSel = h("select", { id: nextId("sort"), onchange: () => { this.state.sort = this.sortSel.value; this.loadReviews(false); } },
        ["newest", "oldest", "highest", "lowest", "helpful"].map((v) => h("option", { value: v, selected: v === this.state.sort }, this.t(v === "helpful" ? "helpfulSort" : v))));
      this.rateSel = h("select", { id: nextId("rate"), onchange: () => this.filter(this.rateSel.value) },
        h("option", { value: "" }, this.t("all")), [5, 4, 3, 2, 1].map((n) => h("option", { value: String(n) }, this.t("starN", n, (x) => this.num(x)))));
      this.qList = h("ol");
      this.qMsg = h("div", { class: "msg", tabindex: "-1", role: "status" });
      this.qForm = this.buildQuestionForm();
      this.faqBox = h("div");
      this.faqSection = h("section", { hidden: true, "aria-labelledby": "tr-faq" }, h("h2", { id: "tr-faq" }, this.t("faq")), this.faqBox);
      const reviewsHead = h("h2", { id: "tr-rv" }, this.t("reviews"));
      this.root.replaceChildren(
        h("style", null, CSS),
        live,
        h("section", { "aria-labelledby": "tr-rv" }, reviewsHead,
          this.summaryBox,
          h("div", { class: "row" }, this.writeBtn),
          this.reviewMsg, this.reviewForm,
          this.toolbar = h("div", { class: "row", style: "margin:1em 0 .5em" },
            h("span", null, h("label", { for: this.sortSel.id, style: "display:inline;margin-right:.4em" }, this.t("sort")), this.sortSel),
            h("span", null, h("label", { for: this.rateSel.id, style: "display:inline;margin-right:.4em" }, this.t("filter")), this.rateSel)),
          this.list, this.moreBtn),
        h("section", { "aria-labelledby": "tr-qa" }, h("h2", { id: "tr-qa" }, this.t("qa")),
          h("div", { class: "row" }, this.toggler(this.t("ask"), this.qForm)), this.qMsg, this.qForm, this.qList),
        this.faqSection,
      );
      this.loadReviews(false);
      this.loadQuestions();
      this.loadFaq();
    }

    announce(text) {
      this.live.textContent = "";
      // A fresh node so screen readers announce the same sentence twice in a row too.
      setTimeout(() => { this.live.textContent = text; }, 30);
    }

    toggler(label, form) {
      const btn = h("button", { type: "button", class: "btn", "aria-expanded": "false", "aria-controls": form.id }, label);
      btn.addEventListener("click", () => {
        const open = form.hidden;
        form.hidden = !open;
        btn.setAttribute("aria-expanded", String(open));
        if (open) (form.querySelector("input,textarea,select") || form).focus();
      });
      form.opener = btn;
      return btn;
    }

    closeForm(form) {
      form.hidden = true;
      if (form.opener) form.opener.setAttribute("aria-expanded", "false");
    }

    filter(rating) {
      this.state.rating = rating;
      this.rateSel.value = rating;
      this.loadReviews(false);
    }

    async loadReviews(append) {
      const q = new URLSearchParams({ sort: this.state.sort, limit: String(PAGE) });
      if (this.state.rating) q.set("rating", this.state.rating);
      if (append && this.state.next) q.set("cursor", this.state.next);
      this.moreBtn.disabled = true;
      this.list.setAttribute("aria-busy", "true");
      const ticket = (this.ticket = (this.ticket || 0) + 1);
      try {
        const data = await this.call(`${this.productBase()}/reviews?${q}`);
        if (ticket !== this.ticket) return; // a newer sort or filter was asked for meanwhile
        const items = Array.isArray(data.items) ? data.items : [];
        if (!append) this.list.replaceChildren();
        const nodes = items.map((item) => this.reviewNode(item));
        this.list.append(...nodes);
        this.state.next = data.next || null;
        this.moreBtn.hidden = !this.state.next;
        this.renderSummary(data.aggregate || {});
        if (!append && !items.length) this.list.append(h("li", { class: "m" }, this.t(this.state.rating ? "noneRated" : "none")));
        if (append && nodes.length) nodes[0].querySelector("h3,.tx").focus();
        if (this.state.rating || append) this.announce(this.t("filtered", this.t("count", this.list.querySelectorAll(".rv").length, (x) => this.num(x))));
      } catch (err) {
        if (ticket !== this.ticket) return;
        this.list.replaceChildren(h("li", { class: "msg no" }, this.t("loadError"), " ",
          h("button", { type: "button", class: "btn2", onclick: () => this.loadReviews(false) }, this.t("retry"))));
      } finally {
        this.moreBtn.disabled = false;
        this.list.removeAttribute("aria-busy");
      }
    }

    renderSummary(agg) {
      const count = Number(agg.count) || 0;
      const avg = Number(agg.average) || 0;
      const hist = agg.histogram || {};
      const fmtN = (x) => this.num(x);
      const bars = h("div", { class: "hist", role: "group", "aria-label": this.t("byRating") },
        [5, 4, 3, 2, 1].map((s) => {
          const n = Number(hist[s]) || 0;
          const pct = count ? Math.round((n * 100) / count) : 0;
          const pressed = this.state.rating === String(s);
          return h("button", { type: "button", "aria-pressed": String(pressed),
            "aria-label": this.t("bar", this.t("starN", s, fmtN), this.t("count", n, fmtN), pct),
            onclick: () => this.filter(pressed ? "" : String(s)) },
          h("span", { "aria-hidden": "true" }, `${s} ★`),
          h("span", { class: "track", "aria-hidden": "true" }, h("span", { class: "fill", style: `width:${pct}%` })),
          h("span", { class: "m", "aria-hidden": "true" }, fmtN(n)));
        }));
      // Nothing to sum up yet: the list says so, and sorting or filtering nothing is noise.
      this.summaryBox.hidden = this.toolbar.hidden = !count && !this.state.rating;
      this.summaryBox.replaceChildren(
        h("div", { role: "group", "aria-label": this.t("summary") },
          h("div", { class: "big", "aria-hidden": "true" }, count ? this.num(avg, 1) : "–"),
          this.stars(avg),
          h("p", { class: "m" }, this.t("count", count, fmtN))),
        bars);
    }

    reviewNode(r) {
      const author = str(r.author) || this.t("anon");
      const photos = (Array.isArray(r.photos) ? r.photos : []).map((p, i) => {
        const url = this.safeUrl(p && p.url);
        if (!url) return null;
        return h("a", { href: url, target: "_blank", rel: "noopener noreferrer nofollow" },
          h("img", { src: url, alt: this.t("photo", i + 1, author), loading: "lazy", width: 84, height: 84 }));
      }).filter(Boolean);
      const vote = this.voteButton(`${this.base()}/reviews/${encodeURIComponent(str(r.id))}/votes`, r.helpful);
      const reply = r.reply && str(r.reply.text);
      return h("li", { class: "rv", "data-id": str(r.id) },
        h("div", { class: "row" }, this.stars(r.rating), r.verified ? h("span", { class: "badge" }, "✓ ", this.t("verified")) : null),
        str(r.title) ? h("h3", { tabindex: "-1" }, str(r.title)) : null,
        h("p", { class: "tx", tabindex: "-1" }, str(r.text)),
        photos.length ? h("div", { class: "ph" }, photos) : null,
        h("p", { class: "m" }, h("span", { class: "au" }, author), " · ", h("time", { datetime: str(r.created_at) }, this.date(r.created_at))),
        reply ? h("div", { class: "rep" }, h("strong", null, this.t("reply")), h("p", { class: "tx" }, reply)) : null,
        h("div", { class: "row" }, vote, this.reportBox(`${this.base()}/reviews/${encodeURIComponent(str(r.id))}/flags`)));
    }

    // A reader's report: a disclosure with the reason and a send button.
    reportBox(url) {
      const sel = h("select", { id: nextId("why"), name: "reason" });
      const f = this.t("flags");
      for (let i = 0; i < f.length; i += 2) sel.append(h("option", { value: f[i] }, f[i + 1]));
      const box = h("details", { class: "rp" }, h("summary", null, this.t("report")));
      const form = h("form", { class: "mini" }, h("label", { for: sel.id }, this.t("why")), sel,
        h("button", { type: "submit", class: "btn2" }, this.t("sendReport")));
      form.addEventListener("submit", async (e) => {
        e.preventDefault();
        try {
          await this.call(url, { method: "POST", headers: { "Content-Type": "application/json" },
            body: JSON.stringify({ reason: sel.value, device_id: deviceId() }) });
          const done = h("p", { class: "m", tabindex: "-1" }, this.t("reported"));
          box.replaceWith(done);
          done.focus();
          this.announce(this.t("reported"));
        } catch (err) {
          this.announce(err.message || this.t("sendError"));
        }
      });
      box.append(form);
      return box;
    }

    voteButton(url, helpful) {
      const count = Number(helpful) || 0;
      const button = h("button", { type: "button", class: "btn2" }, this.t("helpful", this.num(count)));
      button.addEventListener("click", () => this.vote(button, url, count));
      return button;
    }

    async vote(button, url, count) {
      button.disabled = true;
      try {
        const body = await this.call(url, { method: "POST", headers: { "Content-Type": "application/json" },
          body: JSON.stringify({ device_id: deviceId() }) });
        const n = Number(body.helpful);
        button.textContent = this.t("helpful", this.num(Number.isFinite(n) ? n : count + 1));
        button.setAttribute("aria-pressed", "true");
        this.announce(this.t("voted"));
      } catch (err) {
        button.disabled = err.status === 409; // already voted from this device
        this.announce(err.message || this.t("sendError"));
      }
    }

    field(kind, name, label, extra = {}, hint) {
      const id = nextId(name);
      const hintId = hint ? `${id}-h` : null;
      const errId = `${id}-e`;
      const input = kind === "textarea"
        ? h("textarea", { id, name, rows: 4, "aria-describedby": [hintId, errId].filter(Boolean).join(" "), ...extra })
        : h("input", { id, name, type: kind, "aria-describedby": [hintId, errId].filter(Boolean).join(" "), ...extra });
      return h("div", { class: "f", "data-field": name }, h("label", { for: id }, label), input,
        hint ? h("p", { class: "m", id: hintId, style: "margin:.2em 0 0" }, hint) : null,
        h("p", { class: "err", id: errId, hidden: true }));
    }

    buildReviewForm() {
      const legendId = nextId("lg");
      const errId = nextId("re");
      const radios = [1, 2, 3, 4, 5].map((n) => {
        const id = nextId("r");
        return [h("input", { type: "radio", name: "rating", value: String(n), id, required: true, "aria-describedby": errId }),
          h("label", { for: id }, h("span", { "aria-hidden": "true" }, "★"), h("span", { class: "sr" }, this.t("starN", n, (x) => this.num(x))))];
      });
      const group = h("fieldset", { class: "f", "data-field": "rating" }, h("legend", { id: legendId }, this.t("rating")),
        h("div", { class: "rate" }, radios), h("p", { class: "err", id: errId, hidden: true }));
      group.addEventListener("change", () => {
        const v = Number((group.querySelector("input:checked") || {}).value || 0);
        group.querySelectorAll(".rate label").forEach((l, i) => l.classList.toggle("on", i < v));
      });
      const form = h("form", { id: nextId("wf"), class: "write", hidden: true, novalidate: true, "aria-label": this.t("write") },
        group,
        this.field("text", "title", this.t("title"), { maxlength: 200, required: true, autocomplete: "off" }),
        this.field("textarea", "text", this.t("text"), { maxlength: 5000, required: true }),
        this.field("text", "display_name", this.t("name"), { maxlength: 80, autocomplete: "nickname" }, this.t("nameHint")),
        this.field("email", "email", this.t("email"), { maxlength: 254, autocomplete: "email" }),
        this.field("file", "photos", this.t("photos"), { accept: "image/jpeg,image/png,image/webp", multiple: true }),
        h("div", { class: "row" }, h("button", { type: "submit", class: "btn" }, this.t("send")),
          h("button", { type: "button", class: "btn2", onclick: () => { this.closeForm(form); form.opener.focus(); } }, this.t("cancel"))));
      form.addEventListener("submit", (e) => { e.preventDefault(); this.submitReview(form); });
      return form;
    }

    buildQuestionForm() {
      const form = h("form", { id: nextId("qf"), class: "ask", hidden: true, novalidate: true, "aria-label": this.t("ask") },
        this.field("textarea", "text", this.t("question"), { maxlength: 2000, required: true }),
        this.field("text", "display_name", this.t("name"), { maxlength: 80, autocomplete: "nickname" }, this.t("nameHint")),
        this.field("email", "email", this.t("email"), { maxlength: 254, autocomplete: "email" }),
        h("div", { class: "row" }, h("button", { type: "submit", class: "btn" }, this.t("sendQ")),
          h("button", { type: "button", class: "btn2", onclick: () => { this.closeForm(form); form.opener.focus(); } }, this.t("cancel"))));
      form.addEventListener("submit", (e) => { e.preventDefault(); this.submitQuestion(form); });
      return form;
    }

    // Marks a field wrong (or clears it with message ""), wiring the message to the control.
    fieldError(form, name, message) {
      const box = form.querySelector(`[data-field="${name}"]`);
      if (!box) return null;
      const err = box.querySelector(".err");
      err.textContent = message || "";
      err.hidden = !message;
      box.querySelectorAll("input,textarea").forEach((c) => (message ? c.setAttribute("aria-invalid", "true") : c.removeAttribute("aria-invalid")));
      return message ? box.querySelector("input,textarea") : null;
    }

    clearErrors(form) {
      form.querySelectorAll("[data-field]").forEach((b) => this.fieldError(form, b.dataset.field, ""));
    }

    showResult(box, kind, message, reasons) {
      const list = (reasons || []).map((r) => str(r && r.message)).filter((m) => m && !message.includes(m));
      box.className = `msg ${kind}`;
      box.replaceChildren(h("p", { style: "margin:0" }, message), ...(list.length ? [h("ul", null, list.map((m) => h("li", null, m)))] : []));
      box.focus();
      this.announce([message, ...list].join(" "));
    }

    async send(form, url, payload, files, box, done) {
      const button = form.querySelector("[type=submit]");
      const label = button.textContent;
      button.disabled = true;
      button.textContent = this.t("sending");
      form.setAttribute("aria-busy", "true");
      try {
        let body;
        let headers = {};
        if (files && files.length) {
          body = new FormData();
          for (const [k, v] of Object.entries(payload)) if (v !== "" && v != null) body.append(k, String(v));
          for (const f of files) body.append("photos", f);
        } else {
          body = JSON.stringify(payload);
          headers = { "Content-Type": "application/json" };
        }
        done(await this.call(url, { method: "POST", body, headers }));
      } catch (err) {
        const details = (err.body && err.body.error && err.body.error.details) || [];
        let first = null;
        for (const d of details) {
          const name = str(d.field).split(".").pop().replace(/\[\d+\]$/, "");
          const target = this.fieldError(form, name === "name" ? "display_name" : name, str(d.message));
          first = first || target;
        }
        this.showResult(box, "no", err.body ? err.message : this.t("sendError"));
        if (first) first.focus();
      } finally {
        button.disabled = false;
        button.textContent = label;
        form.removeAttribute("aria-busy");
      }
    }

    requireFields(form, names) {
      let first = null;
      for (const name of names) {
        const c = form.elements[name];
        const empty = c instanceof RadioNodeList ? !c.value : !c.value.trim();
        if (empty) first = first || this.fieldError(form, name, this.t(name === "rating" ? "chooseRating" : "required"));
      }
      if (first) first.focus();
      return !first;
    }

    submitReview(form) {
      this.clearErrors(form);
      const el = form.elements;
      const files = Array.from(el.photos.files || []);
      if (!this.requireFields(form, ["rating", "title", "text"])) return;
      if (files.length > MAX_PHOTOS) { this.fieldError(form, "photos", this.t("tooMany")).focus(); return; }
      const payload = { rating: Number(el.rating.value), title: el.title.value.trim(), text: el.text.value.trim(),
        display_name: el.display_name.value.trim(), email: el.email.value.trim(), device_id: deviceId() };
      const token = this.getAttribute("token");
      if (token) payload.token = token;
      this.send(form, `${this.productBase()}/reviews`, payload, files, this.reviewMsg, (res) => {
        const status = str(res.status);
        const kind = status === "published" ? "ok" : status === "held" ? "hold" : "no";
        if (status !== "rejected") {
          form.reset();
          form.querySelectorAll(".rate label").forEach((l) => l.classList.remove("on"));
          this.closeForm(form);
        }
        this.showResult(this.reviewMsg, kind, str(res.message) || this.t(status === "published" || status === "held" ? status : "rejected"), res.reasons);
        if (status === "published") this.loadReviews(false);
      });
    }

    submitQuestion(form) {
      this.clearErrors(form);
      if (!this.requireFields(form, ["text"])) return;
      const el = form.elements;
      const payload = { text: el.text.value.trim(), display_name: el.display_name.value.trim(), email: el.email.value.trim(),
        device_id: deviceId() };
      this.send(form, `${this.productBase()}/questions`, payload, null, this.qMsg, (res) => {
        const status = str(res.status);
        if (status !== "rejected") { form.reset(); this.closeForm(form); }
        this.showResult(this.qMsg, status === "published" ? "ok" : status === "held" ? "hold" : "no",
          str(res.message) || this.t(status === "published" ? "qPublished" : status === "held" ? status : "rejected"), res.reasons);
        if (status === "published") this.loadQuestions();
      });
    }

    async loadQuestions() {
      try {
        const data = await this.call(`${this.productBase()}/questions`);
        const items = Array.isArray(data.items) ? data.items : [];
        this.qList.replaceChildren(...items.map((q) => this.questionNode(q)));
        if (!items.length) this.qList.append(h("li", { class: "m" }, this.t("noQ")));
      } catch (_) {
        this.qList.replaceChildren(h("li", { class: "m" }, this.t("loadError")));
      }
    }

    questionNode(q) {
      const answers = Array.isArray(q.answers) ? q.answers : [];
      return h("li", { class: "q", "data-id": str(q.id) },
        h("p", null, h("strong", null, str(q.text))),
        h("p", { class: "m" }, str(q.author) || this.t("anon"), " · ", h("time", { datetime: str(q.created_at) }, this.date(q.created_at)),
          " · ", this.t("answers", answers.length, (x) => this.num(x))),
        answers.length ? h("ul", { class: "ans" }, answers.map((a) => h("li", { "data-id": str(a.id) },
          h("p", { class: "tx" }, str(a.text)),
          h("p", { class: "m" }, str(a.author) || this.t("anon"),
            a.by_staff ? [" ", h("span", { class: "badge" }, this.t("staff"))] : null,
            !a.by_staff && a.verified_buyer ? [" ", h("span", { class: "badge" }, "✓ ", this.t("buyer"))] : null,
            " · ", h("time", { datetime: str(a.created_at) }, this.date(a.created_at))),
          this.voteButton(`${this.base()}/answers/${encodeURIComponent(str(a.id))}/votes`, a.helpful)))) : null,
        this.answerBox(q.id));
    }

    answerBox(id) {
      const msg = this.qMsg; // outside the list, so it survives the reload of a published answer
      const form = h("form", { class: "mini", novalidate: true },
        this.field("textarea", "text", this.t("yourAnswer"), { maxlength: 2000, required: true }),
        this.field("text", "display_name", this.t("name"), { maxlength: 80, autocomplete: "nickname" }),
        h("div", { class: "row" }, h("button", { type: "submit", class: "btn" }, this.t("sendA"))));
      const box = h("details", { class: "rp" }, h("summary", null, this.t("answer")), form);
      form.addEventListener("submit", (e) => {
        e.preventDefault();
        this.clearErrors(form);
        if (!this.requireFields(form, ["text"])) return;
        const payload = { text: form.elements.text.value.trim(), display_name: form.elements.display_name.value.trim(),
          device_id: deviceId() };
        const token = this.getAttribute("token");
        if (token) payload.token = token;
        this.send(form, `${this.base()}/questions/${encodeURIComponent(str(id))}/answers`, payload, null, msg, (res) => {
          const status = str(res.status);
          if (status !== "rejected") { form.reset(); box.open = false; }
          this.showResult(msg, status === "published" ? "ok" : status === "held" ? "hold" : "no",
            str(res.message) || this.t(status === "rejected" ? "rejected" : "thanks"), res.reasons);
          if (status === "published") this.loadQuestions();
        });
      });
      return box;
    }

    async loadFaq() {
      try {
        const data = await this.call(`${this.productBase()}/faq`);
        const items = Array.isArray(data.items) ? data.items : [];
        this.faqBox.replaceChildren(...items.map((f) => h("details", null, h("summary", null, str(f.question)), h("p", { class: "tx" }, str(f.answer)))));
        this.faqSection.hidden = !items.length;
      } catch (_) {
        this.faqSection.hidden = true;
      }
    }
  }

  customElements.define("tertulia-reviews", TertuliaReviews);
})();
