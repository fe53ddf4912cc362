// MathJax 3 for the site. The Markdown pages go through pymdownx.arithmatex (generic), which
// wraps math as \( \) and \[ \]; the notebooks' Markdown cells keep $ and $$, so both kinds of
// delimiter are read. Code (pre, code) is never scanned, so `$ diffusion train` stays as is.
window.MathJax = {
  tex: {
    inlineMath: [["\\(", "\\)"], ["$", "$"]],
    displayMath: [["\\[", "\\]"], ["$$", "$$"]],
    processEscapes: true,
    processEnvironments: true,
  },
  options: {
    ignoreHtmlClass: "tex2jax_ignore",
  },
};

// Typeset again whenever Material swaps in a new page without a reload.
document$.subscribe(() => {
  if (MathJax.typesetPromise) {
    MathJax.startup.output.clearCache();
    MathJax.typesetClear();
    MathJax.texReset();
    MathJax.typesetPromise();
  }
});
