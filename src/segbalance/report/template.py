"""The report's jinja2 template and CSS, kept as Python strings (no package-data files).

Rendered with autoescape on: every name that comes from the data (cells, cases, errors)
is escaped. The page has no script and no external URL; figures are data URIs.
"""

from __future__ import annotations

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0 auto;
       max-width: 1200px; padding: 0 1.5rem 3rem; color: #1d2430; line-height: 1.45; }
header { border-bottom: 2px solid #d0d7e2; margin-bottom: 1rem; }
h1 { font-size: 1.6rem; margin: 1.2rem 0 0.3rem; }
h2 { font-size: 1.25rem; margin-top: 2.2rem; border-bottom: 1px solid #e3e8ef; }
nav a { margin-right: 1rem; color: #1f5fbf; text-decoration: none; }
.meta { color: #566173; font-size: 0.9rem; }
table { border-collapse: collapse; margin: 0.6rem 0 1rem; font-size: 0.85rem; }
caption { text-align: left; font-weight: 600; padding-bottom: 0.3rem; }
th, td { border: 1px solid #d8dee8; padding: 0.25rem 0.5rem; text-align: left; }
th { background: #f2f5f9; }
tbody tr:nth-child(even) { background: #fafbfd; }
figure { margin: 0.8rem 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #e3e8ef; }
figcaption { font-size: 0.85rem; color: #434c5b; max-width: 900px; }
.na { color: #8a5a00; background: #fff6e0; padding: 0.4rem 0.7rem; border-left: 3px solid #e0a000; }
.note { color: #566173; font-size: 0.88rem; }
.intro { max-width: 900px; font-size: 0.92rem; }
"""

TEMPLATE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ title }}</title>
<style>{{ css | safe }}</style>
</head>
<body>
<header>
<h1>{{ title }}</h1>
<p class="meta">{% for line in meta %}{{ line }}{% if not loop.last %}<br>{% endif %}{% endfor %}</p>
<nav>{% for s in sections %}<a href="#{{ s.id }}">{{ s.title }}</a>{% endfor %}</nav>
</header>
<main>
{% for s in sections %}
<section id="{{ s.id }}">
<h2>{{ s.title }}</h2>
{% if s.unavailable %}
<p class="na">not available: {{ s.unavailable }}</p>
{% else %}
{% if s.intro %}<p class="intro">{{ s.intro }}</p>{% endif %}
{% for f in s.figures %}
<figure>
<img src="data:image/png;base64,{{ f.png_base64 }}" alt="{{ f.alt }}">
<figcaption>{{ f.caption }}</figcaption>
</figure>
{% endfor %}
{% for t in s.tables %}
<table>
<caption>{{ t.caption }}</caption>
<thead><tr>{% for h in t.header %}<th>{{ h }}</th>{% endfor %}</tr></thead>
<tbody>
{% for row in t.rows %}<tr>{% for cell in row %}<td>{{ cell }}</td>{% endfor %}</tr>
{% endfor %}</tbody>
</table>
{% endfor %}
{% for n in s.notes %}<p class="note">{{ n }}</p>
{% endfor %}
{% endif %}
</section>
{% endfor %}
</main>
<footer class="meta"><p>{{ footer }}</p></footer>
</body>
</html>
"""
