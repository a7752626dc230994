// The dashboard page: one self-contained HTML document (inline CSS and script, no CDN, no build step). The
// script polls /api/state (with the bearer token the operator typed, kept in sessionStorage) and draws the
// tables and the per-round plots as inline SVG. Every value reaches the DOM through textContent or an
// attribute, never as markup: site names and metric names come from the network. A DP run's privacy panel
// (state.privacy) shows only public figures: ε, the budget, rounds it allows, C, z, q.

const CSS = `
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#1d232b;background:#fafbfc}
h1{font-size:1.4em;margin:0 0 .2em}h2{font-size:1.1em;margin:1.4em 0 .4em}
table{border-collapse:collapse;background:#fff}td,th{border:1px solid #d6dbe1;padding:.25em .6em;text-align:left}
th{background:#eef1f4}td.num{text-align:right;font-variant-numeric:tabular-nums}
progress{width:360px;vertical-align:middle}
.ok{color:#2f7d4a}.bad{color:#b3261e}.muted{color:#69737d}
#charts{display:flex;flex-wrap:wrap;gap:1.5em}svg{background:#fff;border:1px solid #d6dbe1}
#login{display:none}`;

const SCRIPT = `
const COLORS=['#1f77b4','#d62728','#2ca02c','#9467bd','#ff7f0e','#8c564b'];
const $=(id)=>document.getElementById(id);
const el=(tag,attrs,text)=>{const e=document.createElement(tag);for(const k in attrs||{})e.setAttribute(k,attrs[k]);if(text!==undefined)e.textContent=String(text);return e;};
const svgEl=(tag,attrs,text)=>{const e=document.createElementNS('http://www.w3.org/2000/svg',tag);for(const k in attrs||{})e.setAttribute(k,String(attrs[k]));if(text!==undefined)e.textContent=String(text);return e;};
const fmt=(v)=>typeof v==='number'?(Math.abs(v)>=100?v.toFixed(0):v.toPrecision(4)):'';
const LABELS={'clients.train_loss':'train (sites)','clients.eval_loss':'validation (sites)','heldout.eval_loss':'held-out','clients.eval_accuracy':'validation (sites)','heldout.eval_accuracy':'held-out','heldout.loss':'held-out','heldout.accuracy':'held-out','privacy.epsilon':'ε at δ','privacy.epsilon_budget':'budget'};
function chart(id,title,versions,pick){
  const names=[...new Set(versions.flatMap((v)=>Object.keys(v.metrics).filter(pick)))].sort();
  const rounds=versions.filter((v)=>v.round>0).length;
  const W=560,H=260,L=56,R=150,T=28,B=36;
  const svg=svgEl('svg',{id,width:W,height:H,viewBox:'0 0 '+W+' '+H,'data-rounds':rounds,'data-series':names.length,role:'img'});
  svg.appendChild(svgEl('text',{x:L,y:18,'font-size':14,'font-weight':600,class:'caption'},title+' per round ('+rounds+' round'+(rounds===1?'':'s')+')'));
  const pts=names.map((n)=>versions.filter((v)=>typeof v.metrics[n]==='number').map((v)=>[v.round,v.metrics[n]]));
  const all=pts.flat();
  if(all.length===0){svg.appendChild(svgEl('text',{x:L,y:H/2,class:'muted'},'no values yet'));return svg;}
  const xs=versions.map((v)=>v.round),x0=Math.min(...xs),x1=Math.max(x0+1,...xs);
  let y0=Math.min(...all.map((p)=>p[1])),y1=Math.max(...all.map((p)=>p[1]));if(y0===y1){y0-=0.5;y1+=0.5;}
  const X=(x)=>L+(x-x0)/(x1-x0)*(W-L-R),Y=(y)=>H-B-(y-y0)/(y1-y0)*(H-T-B);
  svg.appendChild(svgEl('line',{x1:L,y1:H-B,x2:W-R,y2:H-B,stroke:'#888'}));
  svg.appendChild(svgEl('line',{x1:L,y1:T,x2:L,y2:H-B,stroke:'#888'}));
  const step=Math.max(1,Math.ceil((x1-x0)/10));
  for(let x=x0;x<=x1;x+=step){svg.appendChild(svgEl('text',{x:X(x),y:H-B+16,'font-size':11,'text-anchor':'middle',class:'xtick'},x));}
  svg.appendChild(svgEl('text',{x:(L+W-R)/2,y:H-4,'font-size':11,'text-anchor':'middle'},'round'));
  for(let i=0;i<=4;i++){const y=y0+(y1-y0)*i/4;svg.appendChild(svgEl('text',{x:L-6,y:Y(y)+4,'font-size':11,'text-anchor':'end'},fmt(y)));}
  names.forEach((n,i)=>{
    const c=COLORS[i%COLORS.length];
    svg.appendChild(svgEl('polyline',{points:pts[i].map((p)=>X(p[0])+','+Y(p[1])).join(' '),fill:'none',stroke:c,'stroke-width':2,'data-metric':n}));
    for(const p of pts[i]){const dot=svgEl('circle',{cx:X(p[0]),cy:Y(p[1]),r:3,fill:c});dot.appendChild(svgEl('title',{},n+' round '+p[0]+': '+fmt(p[1])));svg.appendChild(dot);}
    svg.appendChild(svgEl('rect',{x:W-R+10,y:T+i*18,width:10,height:10,fill:c}));
    svg.appendChild(svgEl('text',{x:W-R+26,y:T+i*18+9,'font-size':11},LABELS[n]||n));
  });
  return svg;
}
function table(id,head,rows){
  const t=el('table',{id});const tr=el('tr');for(const h of head)tr.appendChild(el('th',{},h));t.appendChild(tr);
  for(const r of rows){const row=el('tr');for(const c of r){const td=el('td',c.cls?{class:c.cls}:{},c.text);row.appendChild(td);}t.appendChild(row);}
  return t;
}
function render(s){
  const r=s.run,done=Math.max(0,r.latestVersion);
  $('title').textContent='fedtune · run '+r.id;
  $('progress-text').textContent='version '+done+' of '+r.roundsTotal+' · phase '+r.phase+(r.round?' · round '+r.round+' attempt '+r.attempt:'');
  $('progress-bar').max=Math.max(1,r.roundsTotal);$('progress-bar').value=Math.min(done,r.roundsTotal);
  $('health').textContent=r.health;$('health').className=r.health==='SERVING'?'ok':'bad';
  $('meta').textContent='secure aggregation '+(r.secureAggregation?'on':'off')+(r.sampleHidden?' · Poisson-sampled rounds: who takes part is hidden':'')+' · manifests signed by key '+r.manifestKeyId+' · waits for '+r.minClients+' sites';
  $('privacy').hidden=!s.privacy;
  if(s.privacy){const p=s.privacy;
    $('privacy-figures').replaceChildren(table('privacy-table',['privacy (public: in every manifest)',''],[
      [{text:'ε spent / budget'},{text:(p.epsilon===null?'unbounded':p.epsilon.toPrecision(4))+' / '+(p.epsilonBudget>0?String(p.epsilonBudget):'-')+' at δ = '+String(p.delta),cls:'num'}],
      [{text:'rounds the budget allows'},{text:(p.roundsLeft===null?'∞':String(p.roundsLeft))+(typeof p.roundsLeftAtThreshold==='number'?' ('+p.roundsLeftAtThreshold+' if each ends at the SecAgg threshold)':''),cls:'num'}],
      [{text:'clip norm C'},{text:p.clipNorm.toPrecision(4)+(p.adaptiveClipping?' (adaptive: the next round’s)':' (fixed)'),cls:'num'}],
      [{text:'noise multiplier z'},{text:String(p.noiseMultiplier),cls:'num'}],
      [{text:'sampling rate q'},{text:String(p.samplingRate),cls:'num'}]]),
      // ε as each version's manifest stamps it (an unbounded one is left out), beside the budget when there is one.
      chart('privacy-chart','ε spent',s.versions.filter((v)=>typeof v.epsilon==='number').map((v)=>({round:v.round,metrics:Object.assign({'privacy.epsilon':v.epsilon},p.epsilonBudget>0?{'privacy.epsilon_budget':p.epsilonBudget}:{})})),()=>true));}
  $('sites').replaceChildren(table('sites-table',['site','state','backend','rounds contributed'],s.sites.map((x)=>[{text:x.name},{text:x.state,cls:x.state==='disconnected'?'bad':x.state==='finished'?'ok':''},{text:x.backend},{text:x.rounds,cls:'num'}])));
  $('charts').replaceChildren(chart('loss-chart','Loss',s.versions,(n)=>/loss$/.test(n)),chart('accuracy-chart','Accuracy',s.versions,(n)=>/accuracy$/.test(n)));
  const keys=['clients.train_loss','clients.eval_loss','heldout.eval_loss','heldout.eval_accuracy'];
  $('versions').replaceChildren(table('versions-table',['version','round','attempt','created','sites','train loss','val loss','held-out loss','held-out acc.','files','signature'],
    s.versions.slice().reverse().map((v)=>[{text:v.version,cls:'num'},{text:v.round,cls:'num'},{text:v.attempt,cls:'num'},{text:v.createdAt},{text:v.participants+(v.secureAggregation?' (SecAgg)':''),cls:'num'}]
      .concat(keys.map((k)=>({text:fmt(v.metrics[k]),cls:'num'})),[{text:v.files,cls:'num'},{text:v.signature,cls:v.signature==='signed'?'ok':'bad'}]))));
  $('updated').textContent='updated '+new Date().toLocaleTimeString();
}
async function poll(){
  const token=sessionStorage.getItem('fedtune-token');
  let delay=2000;
  try{
    const res=await fetch('api/state',{headers:token?{authorization:'Bearer '+token}:{},cache:'no-store'});
    if(res.status===401){$('login').style.display='block';$('main').style.display='none';return;}
    if(!res.ok)throw new Error('HTTP '+res.status);
    $('login').style.display='none';$('main').style.display='block';
    render(await res.json());
  }catch(e){$('updated').textContent='coordinator unreachable ('+e.message+'); retrying';delay=5000;}
  setTimeout(poll,delay);
}
$('login-form').addEventListener('submit',(ev)=>{ev.preventDefault();sessionStorage.setItem('fedtune-token',$('token').value);poll();});
poll();`;

/** The page, with `nonce` allowing its one inline script under the Content-Security-Policy. */
export function dashboardPage(nonce: string): string {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>fedtune dashboard</title>
<meta name="viewport" content="width=device-width,initial-scale=1"><link rel="icon" href="data:,">
<style nonce="${nonce}">${CSS}</style></head>
<body>
<div id="login"><form id="login-form"><p>This dashboard needs its token (dashboard.token).</p><input id="token" type="password" autocomplete="off"> <button>Open</button></form></div>
<div id="main">
<h1 id="title">fedtune</h1>
<p><progress id="progress-bar" max="1" value="0"></progress> <span id="progress-text"></span> · gRPC health <b id="health"></b></p>
<p id="meta" class="muted"></p>
<div id="privacy" hidden><h2>Differential privacy</h2><div id="privacy-figures"></div></div>
<h2>Sites</h2><div id="sites"></div>
<h2>Metrics</h2><div id="charts"></div>
<h2>Versions</h2><div id="versions"></div>
<p id="updated" class="muted"></p>
</div>
<script nonce="${nonce}">${SCRIPT}</script>
</body></html>`;
}
