#!/usr/bin/env node
// Typeset the book's mathematics at build time, so the pages carry finished math and load no
// MathJax JavaScript (losslab/sphinxext.py runs this when the Sphinx build finishes).
//
//   node tools/mathjax/prerender.js CONFIG.json PAGE.html [PAGE.html ...]
//
// CONFIG.json: {"mathjax": <the book's mathjax3_config, as the browser got it>,
//               "css": "<path of the shared stylesheet to write>",
//               "fonts": "<URL of the woff fonts, relative to that stylesheet>"}
//
// MathJax 3.2.2's own components (vendored in tools/mathjax/es5, the ones the pages loaded in the
// browser: TeX input with the same packages, CHTML output, the hidden MathML for screen readers)
// run in Node on MathJax's lite DOM. Each page is parsed whole and MathJax finds its math exactly
// as it did in the browser (processHtmlClass / ignoreHtmlClass, delimiters, skipped tags); every
// formula it finds is replaced, in the page's own text, by MathJax's output, and nothing else on
// the page changes (the page is not re-serialized). A page with math gets a link to the shared
// stylesheet, which holds the CSS of every character and construct used by any page (MathJax's
// adaptive CSS, accumulated over the pages of this run and merged with the rules of an earlier
// run, so a rebuild that leaves pages already typeset keeps their rules).
// A formula MathJax cannot typeset (an undefined macro, a TeX error, an extension not vendored) fails
// the build, naming its page and the formula.
'use strict';

const fs = require('fs');
const path = require('path');
const crypto = require('crypto');

const ES5 = path.join(__dirname, 'es5');
const MARK = 'data-prerendered-math';

// In the browser MathJax scaled each formula so that its x-height matched the text's (matchFontHeight),
// measuring the reader's font: the TeX fonts' x-height is 0.442em, so a formula's font size is the
// text's x-height (1ex of the parent) / 0.442. The same in CSS, for whatever font the reader has.
const SCALE = `mjx-container.MathJax[jax="CHTML"] {\n  font-size: ${(1 / 0.442).toFixed(4)}ex;\n}\n`;

function usage(msg) {
  process.stderr.write(`prerender.js: ${msg}\nusage: node prerender.js CONFIG.json PAGE.html...\n`);
  process.exit(2);
}

const [configFile, ...pages] = process.argv.slice(2);
if (!configFile || !pages.length) usage('a configuration and at least one page are needed');
const settings = JSON.parse(fs.readFileSync(configFile, 'utf8'));
const browserConfig = settings.mathjax || {};

// The browser's configuration, with the lite DOM instead of the browser's, and no typesetting at startup.
const load = ((browserConfig.loader || {}).load || ['input/tex', 'output/chtml']).filter(c => !c.startsWith('ui/'));
global.MathJax = {
  ...browserConfig,
  options: Object.fromEntries(Object.entries(browserConfig.options || {}).filter(([k]) => k !== 'menuOptions')),
  loader: {...(browserConfig.loader || {}), paths: {mathjax: ES5}, require: require, load: [...load, 'adaptors/liteDOM']},
  // The browser scaled each formula so that its x-height matched the text around it (matchFontHeight),
  // measuring the reader's font; here a rule of the stylesheet does it (see SCALE below).
  chtml: {...(browserConfig.chtml || {}), fontURL: settings.fonts, adaptiveCSS: true, matchFontHeight: false},
  startup: {...(browserConfig.startup || {}), typeset: false},
};
// An undefined macro is an error here (the browser drew its name in red: noundefined), so it fails the build.
const tex = MathJax.tex = {...(browserConfig.tex || {})};
tex.packages = Array.isArray(tex.packages) ? tex.packages.filter(p => p !== 'noundefined')
  : {...(tex.packages || {}), '[-]': [...((tex.packages || {})['[-]'] || []), 'noundefined']};
require(path.join(ES5, 'startup.js'));

// The lite DOM's parser, recording where each text node starts in the page's text (so a formula can be
// replaced in place), and parsing <fieldset> and <option> as elements, as browsers do (the lite parser
// takes their content as raw text).
function offsetParser(LiteParser, PATTERNS) {
  class OffsetParser extends LiteParser {
    // The lite parser's loop, walking the parts by index (it shifts them off the array, which takes
    // seconds on a page of megabytes).
    parseFromString(text, _format, adaptor) {
      if (/<\?/.test(text)) throw new Error('processing instructions (<?...?>) are not supported');
      const root = adaptor.createDocument();
      let node = adaptor.body(root);
      const parts = this.parts = text.split(PATTERNS.tag);
      const starts = this.starts = [0];
      for (const p of parts) starts.push(starts[starts.length - 1] + (p ? p.length : 0));
      for (this.k = 0; this.k < parts.length;) {
        const i = this.k;
        const t = parts[this.k++];
        const tag = parts[this.k++];
        if (t) {
          const child = this.addText(adaptor, node, t);
          child.source = {start: starts[i], raw: t};
        }
        if (tag && tag.charAt(tag.length - 1) === '>') {
          if (tag.charAt(1) === '!') this.addComment(adaptor, node, tag);
          else if (tag.charAt(1) === '/') node = this.closeTag(adaptor, node, tag);
          else node = this.openTag(adaptor, node, tag, null);
        }
      }
      this.parts = this.starts = null;
      this.checkDocument(adaptor, root);
      return root;
    }
    // The raw text of <script>, <style>, <title> and <textarea>, up to the closing tag.
    handlePCDATA(adaptor, node, kind, _parts) {
      const pcdata = [];
      const etag = '</' + kind + '>';
      let ptag = '';
      while (this.k < this.parts.length && ptag !== etag) {
        pcdata.push(ptag);
        pcdata.push(this.parts[this.k++]);
        ptag = this.parts[this.k++];
      }
      adaptor.append(node, adaptor.text(pcdata.join('')));
    }
  }
  OffsetParser.PCDATA = {title: true, style: true, script: true, textarea: true};
  return OffsetParser;
}

// The index in a text node's source of the character at index n of its value (entities decoded).
function sourceIndex(source, n, translate) {
  const entity = /&([a-z][a-z0-9]*|#(?:[0-9]+|x[0-9a-f]+));/ig;
  let raw = 0, value = 0, m;
  while ((m = entity.exec(source.raw))) {
    const gap = m.index - raw;
    if (n <= value + gap) return source.start + raw + (n - value);
    value += gap;
    raw = m.index;
    const decoded = translate(m[0]);
    if (n < value + decoded.length) {
      if (n === value) return source.start + raw;
      throw new Error(`a formula boundary inside the entity ${m[0]}`);
    }
    value += decoded.length;
    raw += m[0].length;
  }
  return source.start + raw + (n - value);
}

// A stylesheet's rules (top-level blocks), to merge stylesheets rule by rule (braces in strings,
// such as content: "{", do not count).
function rules(css) {
  const out = new Set();
  let depth = 0, start = 0, quote = null;
  for (let i = 0; i < css.length; i++) {
    const c = css[i];
    if (quote) {
      if (c === '\\') i++;
      else if (c === quote) quote = null;
    } else if (c === '"' || c === "'") quote = c;
    else if (c === '{') depth++;
    else if (c === '}' && --depth === 0) {
      const rule = css.slice(start, i + 1).trim();
      if (rule) out.add(rule);
      start = i + 1;
    }
  }
  return out;
}

function selector(rule) {
  return rule.startsWith('@font-face') ? rule : rule.slice(0, rule.indexOf('{')).trim();
}

function relativeUrl(fromPage, file) {
  return path.relative(path.dirname(fromPage), file).split(path.sep).join('/');
}

async function main() {
  await MathJax.startup.promise;
  const {mathjax} = MathJax._.mathjax;
  const {LiteParser, PATTERNS} = MathJax._.adaptors.lite.Parser;
  const Entities = MathJax._.util.Entities;
  Entities.options.loadMissingEntities = false;  // no file loads while parsing: an unknown entity stays as written
  const adaptor = MathJax.startup.adaptor;
  adaptor.parser = new (offsetParser(LiteParser, PATTERNS))();
  const output = MathJax.startup.getOutputJax();
  const options = {...(MathJax.config.options || {})};

  let formulas = 0;
  const out = new Map();  // page -> its text with the math typeset
  const used = rules(SCALE);  // the stylesheet's rules
  const started = Date.now();
  for (const file of pages) {
    const text = fs.readFileSync(file, 'utf8');
    // A fresh TeX input per page, as each page had in the browser (macros defined on one page stay there).
    const doc = mathjax.document(text, {...options, InputJax: MathJax.startup.getInputJax(), OutputJax: output});
    doc.findMath();
    const items = Array.from(doc.math);
    if (!items.length) continue;
    const spans = items.map(item => {
      const {start, end} = item;
      if (!start.node.source || !end.node.source) throw new Error(`${file}: a formula outside the page's text: ${item.math}`);
      return [sourceIndex(start.node.source, start.n, Entities.translate),
        sourceIndex(end.node.source, end.n, Entities.translate)];
    });
    try {
      await mathjax.handleRetriesFor(() => doc.render());
    } catch (err) {
      throw new Error(`${file}: ${err.message}`);
    }
    // A display formula carries its width (data-w, in its own em), so the page can tell whether it is
    // wider than the column, and so scrolls, without laying it out (book/_static/scrollables.js).
    for (const item of items) {
      if (item.display) adaptor.setAttribute(item.typesetRoot, 'data-w', output.getBBox(item, doc).w.toFixed(2));
    }
    const errors = items.filter(item => adaptor.tags(item.typesetRoot, 'mjx-merror').length || item.root.isKind('merror'));
    if (errors.length) {
      throw new Error(`${file}: MathJax could not typeset ${errors.length} formula(s), e.g. ${errors[0].start.delim}${errors[0].math}`
        + ` (${adaptor.textContent(adaptor.tags(errors[0].typesetRoot, 'mjx-merror')[0] || errors[0].typesetRoot)})`);
    }
    // Replace each formula in the page's text; the rest of the text stays as it was.
    const order = spans.map((s, k) => k).sort((a, b) => spans[a][0] - spans[b][0]);
    const pieces = [];
    let done = 0;
    for (const k of order) {
      const [from, to] = spans[k];
      if (from < done || to < from) throw new Error(`${file}: overlapping formulas near ${items[k].math}`);
      pieces.push(text.slice(done, from), adaptor.outerHTML(items[k].typesetRoot));
      done = to;
    }
    pieces.push(text.slice(done));
    out.set(file, pieces.join(''));
    formulas += items.length;
    // The page's CSS (MathJax's adaptive CSS: the characters and constructs it uses; the output
    // starts over on each page), added to the shared stylesheet's rules.
    for (const rule of rules(adaptor.textContent(output.styleSheet(doc)))) used.add(rule);
  }

  // The shared stylesheet: MathJax's CSS for everything typeset in this run, merged with an earlier
  // run's, and the rule that scales the formulas to the text around them.
  const merged = used;
  const selectors = new Set([...merged].map(selector));
  for (const rule of rules(fs.existsSync(settings.css) ? fs.readFileSync(settings.css, 'utf8') : '')) {
    if (!selectors.has(selector(rule))) merged.add(rule);  // what pages typeset in an earlier run use
  }
  const css = [...merged].join('\n') + '\n';
  const version = crypto.createHash('sha1').update(css).digest('hex').slice(0, 8);
  fs.mkdirSync(path.dirname(settings.css), {recursive: true});
  fs.writeFileSync(settings.css, css);

  // Every page with math (typeset now or in an earlier run) links the stylesheet, at its current version.
  let linked = 0;
  for (const file of pages) {
    const text = out.get(file) || fs.readFileSync(file, 'utf8');
    const link = `<link rel="stylesheet" type="text/css" href="${relativeUrl(file, settings.css)}?v=${version}" ${MARK} />`;
    let html = text.replace(new RegExp(`<link [^>]*${MARK}[^>]*>`), link);
    if (html === text && !text.includes(MARK)) {
      if (!out.has(file)) continue;
      html = text.replace(/<\/head>/i, `${link}\n</head>`);
    }
    if (html !== text || out.has(file)) fs.writeFileSync(file, html);
    linked++;
  }
  process.stdout.write(`typeset ${formulas} formulas on ${out.size} of ${pages.length} pages in ${(Date.now() - started) / 1000} s`
    + ` (${linked} pages link ${path.basename(settings.css)})\n`);
}

main().catch(err => {
  process.stderr.write(`prerender.js: ${err.stack || err}\n`);
  process.exit(1);
});
