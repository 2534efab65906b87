(function () {
  "use strict";
  // Sortable tables: a click on a th[data-sort] sorts by that column; cells give their sort key in
  // data-key (numbers) or their text.
  function sortTable(th) {
    var table = th.closest("table");
    var body = table.tBodies[0];
    var index = Array.prototype.indexOf.call(th.parentNode.children, th);
    var numeric = th.getAttribute("data-sort") === "num";
    var asc = !th.classList.contains("asc");
    Array.prototype.forEach.call(th.parentNode.children, function (h) { h.classList.remove("asc", "desc"); });
    th.classList.add(asc ? "asc" : "desc");
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var ca = a.cells[index], cb = b.cells[index];
      var ka = ca.hasAttribute("data-key") ? ca.getAttribute("data-key") : ca.textContent;
      var kb = cb.hasAttribute("data-key") ? cb.getAttribute("data-key") : cb.textContent;
      var r;
      if (numeric) {
        var na = parseFloat(ka), nb = parseFloat(kb);
        if (isNaN(na)) { na = -Infinity; }
        if (isNaN(nb)) { nb = -Infinity; }
        r = na - nb;
      } else {
        r = ka.localeCompare(kb);
      }
      return asc ? r : -r;
    });
    rows.forEach(function (row) { body.appendChild(row); });
    if (table.pager) { table.pager(0); }
  }
  document.querySelectorAll("th[data-sort]").forEach(function (th) {
    th.addEventListener("click", function () { sortTable(th); });
  });

  // Paged tables (table[data-page-size]): a long run has hundreds of stacks; show one page of rows at
  // a time. Without script every row shows. A link to a row (#stack-N) opens the page holding it.
  function paged(table) {
    var size = parseInt(table.getAttribute("data-page-size"), 10);
    var body = table.tBodies[0];
    if (!(size > 0) || body.rows.length <= size) { return; }
    var nav = document.createElement("div");
    nav.className = "pager";
    var prev = document.createElement("button"), next = document.createElement("button");
    var label = document.createElement("span");
    prev.type = next.type = "button";
    prev.textContent = "\u2190 previous";
    next.textContent = "next \u2192";
    nav.appendChild(prev); nav.appendChild(label); nav.appendChild(next);
    table.parentNode.insertBefore(nav, table.nextSibling);
    var page = 0;
    function show(p) {
      var n = body.rows.length, pages = Math.ceil(n / size);
      page = Math.max(0, Math.min(p, pages - 1));
      Array.prototype.forEach.call(body.rows, function (row, i) {
        row.hidden = i < page * size || i >= (page + 1) * size;
      });
      label.textContent = " rows " + (page * size + 1) + "\u2013" + Math.min((page + 1) * size, n) +
        " of " + n + " ";
      prev.disabled = page === 0;
      next.disabled = page >= pages - 1;
    }
    prev.addEventListener("click", function () { show(page - 1); });
    next.addEventListener("click", function () { show(page + 1); });
    table.pager = show;
    function reveal() {
      var id = decodeURIComponent(window.location.hash.slice(1));
      var row = id ? document.getElementById(id) : null;
      if (row && row.parentNode === body) {
        show(Math.floor(Array.prototype.indexOf.call(body.rows, row) / size));
        row.scrollIntoView();
      }
    }
    show(0);
    reveal();
    window.addEventListener("hashchange", reveal);
  }
  document.querySelectorAll("table[data-page-size]").forEach(paged);

  // Flame graphs: details on hover, click a box to zoom into it, click the root to zoom out.
  var tip = document.getElementById("tip");
  function showTip(g, ev) {
    if (!tip) { return; }
    tip.textContent = "";
    var name = document.createElement("b");
    name.textContent = g.getAttribute("data-name");
    tip.appendChild(name);
    var unit = g.closest("svg").getAttribute("data-unit");
    var line = document.createElement("div");
    line.textContent = g.getAttribute("data-value") + " \u2014 " + g.getAttribute("data-share") +
      "% of all " + (unit === "bytes/s" ? "growth" : "outstanding bytes") + ", " +
      g.getAttribute("data-stacks") + " stack(s)";
    tip.appendChild(line);
    tip.style.display = "block";
    var x = Math.min(ev.clientX + 14, window.innerWidth - tip.offsetWidth - 8);
    var y = ev.clientY + 16;
    if (y + tip.offsetHeight > window.innerHeight) { y = ev.clientY - tip.offsetHeight - 10; }
    tip.style.left = x + "px";
    tip.style.top = y + "px";
  }
  function zoom(svg, g) {
    var W = 1200;
    var x0 = parseFloat(g.getAttribute("data-x")), w0 = parseFloat(g.getAttribute("data-w"));
    var d0 = parseInt(g.getAttribute("data-depth"), 10);
    svg.querySelectorAll("g.fn").forEach(function (n) {
      var x = parseFloat(n.getAttribute("data-x")), w = parseFloat(n.getAttribute("data-w"));
      var d = parseInt(n.getAttribute("data-depth"), 10);
      var inside = x >= x0 - 1e-9 && x + w <= x0 + w0 + 1e-9;
      var rect = n.querySelector("rect"), text = n.querySelector("text");
      if (d < d0) {
        n.style.display = "";
        n.classList.add("dim");
        rect.setAttribute("x", "0"); rect.setAttribute("width", String(W - 0.5));
        if (text) { text.setAttribute("x", "3"); }
        return;
      }
      n.classList.remove("dim");
      if (!inside) { n.style.display = "none"; return; }
      n.style.display = "";
      var nx = (x - x0) / w0 * W, nw = w / w0 * W;
      rect.setAttribute("x", nx.toFixed(2));
      rect.setAttribute("width", Math.max(nw - 0.5, 0.1).toFixed(2));
      if (text) {
        text.setAttribute("x", (nx + 3).toFixed(2));
        var full = n.getAttribute("data-name"), max = Math.floor((nw - 6) / 6.6);
        text.textContent = max < 3 ? "" : (full.length <= max ? full : full.slice(0, max - 1) + "\u2026");
      }
    });
  }
  document.querySelectorAll("svg.flame").forEach(function (svg) {
    svg.addEventListener("mousemove", function (ev) {
      var g = ev.target.closest ? ev.target.closest("g.fn") : null;
      if (g) { showTip(g, ev); } else if (tip) { tip.style.display = "none"; }
    });
    svg.addEventListener("mouseleave", function () { if (tip) { tip.style.display = "none"; } });
    svg.addEventListener("click", function (ev) {
      var g = ev.target.closest ? ev.target.closest("g.fn") : null;
      if (g) { zoom(svg, g); }
    });
  });

  // Printed reports show every collapsed stack.
  window.addEventListener("beforeprint", function () {
    document.querySelectorAll("details").forEach(function (d) { d.open = true; });
  });
})();
