// Draw every chart the page carries as JSON (no inline scripts: the Content Security Policy forbids them).
document.addEventListener("DOMContentLoaded", function () {
  document.querySelectorAll("script.plotly-data").forEach(function (block) {
    var figure = JSON.parse(block.textContent);
    var target = document.createElement("div");
    target.className = "plot";
    block.parentNode.appendChild(target);
    Plotly.newPlot(target, figure.data, figure.layout, {responsive: true, displaylogo: false});
  });
});
