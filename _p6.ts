import postgres from "postgres";
const sql = postgres("postgres://postgres@127.0.0.1:5432/pw", { max: 1 });
const r = await sql.unsafe("copy (select * from public.profile_360) to stdout").readable();
let bytes = 0, n = 0;
for await (const c of r) { bytes += c.length; if (++n % 50 === 0) { await new Promise(r => setTimeout(r, 20)); console.log(n, (bytes/1e6).toFixed(1), "MB read; rss", (Deno.memoryUsage().rss/1e6).toFixed(0), "buffered", r.readableLength); } if (n > 400) break; }
Deno.exit(0);
