/* pinsignal Tag companion: hands each event c.js sends to the Pinterest Tag (pintrk) with the same event_id. Loaded by c.js only with data-tag; the rules (__MAP__) are made at start-up from the loaded pipelines. */
!function(w,M){
var P=w.pinsignal,o=P&&P.q,
E=v=>v==null||v===""||typeof v=="object"&&!Object.keys(v).length,
G=(x,p)=>{for(var k of p.split("."))x=Array.isArray(x)?/^\d+$/.test(k)?x[k]:void 0:x&&typeof x=="object"&&Object.prototype.hasOwnProperty.call(x,k)?x[k]:void 0;return x},
F=(x,ps)=>{for(var p of ps){var v=G(x,p);if(!E(v))return v}},
L=v=>Array.isArray(v)?v:v==null?[]:[v],
R=v=>typeof v=="number"?v:typeof v=="string"&&/^\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*$/.test(v)?+v:NaN,
X=v=>v==null||typeof v=="boolean"?"":String(v),
C={equals:(v,e)=>v===e,not_equals:(v,e)=>v!==e,
in:(v,e)=>(v===null||typeof v!="object")&&e.includes(v),not_in:(v,e)=>!C.in(v,e),
exists:v=>!E(v),not_exists:E,
contains:(v,e)=>typeof v=="string"?typeof e=="string"&&v.includes(e):Array.isArray(v)?v.includes(e):!!v&&typeof v=="object"&&typeof e=="string"&&Object.prototype.hasOwnProperty.call(v,e),
starts_with:(v,e)=>X(v).startsWith(String(e)),
matches:(v,e)=>{try{return new RegExp(e).test(X(v))}catch{return!1}},
gt:(v,e)=>R(v)>e,gte:(v,e)=>R(v)>=e,lt:(v,e)=>R(v)<e,lte:(v,e)=>R(v)<=e},
N=v=>{v=R(v);return isFinite(v)?v:void 0},
I=v=>{v=N(v);return v===void 0?v:Math.round(v)},
S=v=>E(v)||typeof v=="object"?void 0:String(v),
K={value:N,order_quantity:I,currency:v=>S(v)&&S(v).toUpperCase(),order_id:S,search_query:S,line_items:v=>E(v)?void 0:v,
product_price:N,product_quantity:I},
T={sum:(v,f)=>{var n=0,s=0;for(var i of L(v)){i=N(f?G(i,f):i);if(i!==void 0)n+=i,s=1}return s?n:void 0},
contents:(v,fs)=>L(v).filter(i=>i&&typeof i=="object"&&!Array.isArray(i)).map(i=>{var l={};for(var[k,ks]of fs){var x=F(i,ks),c=K[k]||S;x=E(x)?void 0:c(x);if(x!==void 0)l[k]=x}return l}).filter(l=>!E(l))},
Y=n=>/^[a-z0-9_]+$/.test(n)?n:n.trim().replace(/([a-z0-9])(?=[A-Z])/g,"$1_").toLowerCase().replace(/[^0-9a-z]+/g,"_").replace(/^_+|_+$/g,""),
H=x=>{var y=Object.assign({},x);if(y.type=="track"&&typeof y.event=="string")y.event=Y(y.event);
for(var[ts,cs,n,is,ps]of M)if(ts.includes(y.type)&&cs.every(c=>C[c[1]](G(y,c[0]),c[2]))){var id=F(y,is),d;if(E(id))continue;d={event_id:String(id)};
for(var[k,s,t,a,f]of ps){var v=F(y,s);if(t)v=T[t](v,a);if(E(v))v=f;v=E(v)?void 0:K[k](v);if(v!==void 0)d[k]=v}
typeof w.pintrk=="function"&&w.pintrk("track",n,d)}};
if(P){P.q={push:(...x)=>x.map(H)};o&&o.map(H)}}(window,__MAP__);
